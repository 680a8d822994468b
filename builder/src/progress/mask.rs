//! Masking secret values in progress output.
//!
//! A `RUN --mount=type=secret` command may print its secret (`cat /run/secrets/token`, `set -x`,
//! an HTTP client logging an `Authorization: Basic …` header). Before any renderer sees a log
//! line, error or message, every occurrence of a secret is replaced by `****`.
//!
//! Besides the raw value we mask:
//! - the value without a trailing newline (secret files usually end in one, log lines never do),
//!   and each line of a multi-line value (output is split into lines before it reaches us);
//! - its base64 forms (standard and URL-safe alphabets): the exact encoding, and the characters
//!   that are fully determined by the value at each of the three byte alignments it can have
//!   inside a longer encoded string (`base64("user:" + secret)` contains one of those).
//!
//! The base64 encoder is hand-written (a dozen lines) because we need the alignment-shifted
//! fragments, which a codec crate does not produce, and the workspace has no base64 crate.
//!
//! Known limit: a secret split across two log lines is not recognised.

/// What replaces a secret in output.
pub const MASK: &str = "****";

/// Shortest base64 fragment we mask: shorter ones would blank out ordinary text.
const MIN_FRAGMENT: usize = 4;

/// A set of byte patterns to mask, longest first so the longest match wins at each position.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    patterns: Vec<Vec<u8>>,
}

impl Masker {
    /// Builds the patterns for `secrets`; empty and whitespace-only values are ignored.
    pub fn new(secrets: &[Vec<u8>]) -> Self {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for secret in secrets {
            let mut forms: Vec<&[u8]> = vec![secret.as_slice(), trim_newline(secret)];
            forms.extend(secret.split(|&b| b == b'\n').map(trim_newline));
            for form in forms {
                // Masking whitespace would blank out every line; such a value cannot leak much.
                if form.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                patterns.push(form.to_vec());
                for alphabet in [STANDARD, URL_SAFE] {
                    let exact = encode(form, alphabet);
                    patterns.push(exact.clone().into_bytes());
                    patterns.push(exact.trim_end_matches('=').as_bytes().to_vec());
                    for offset in 0..3 {
                        let fragment = aligned_fragment(form, offset, alphabet);
                        if fragment.len() >= MIN_FRAGMENT {
                            patterns.push(fragment.into_bytes());
                        }
                    }
                }
            }
        }
        patterns.retain(|p| !p.is_empty());
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        patterns.dedup();
        Masker { patterns }
    }

    /// True when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// `text` with every secret occurrence replaced by [`MASK`].
    pub fn mask(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_owned();
        }
        let bytes = text.as_bytes();
        let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
        let mut i = 0;
        let mut masked_any = false;
        while i < bytes.len() {
            match self.patterns.iter().find(|p| bytes[i..].starts_with(p)) {
                Some(p) => {
                    out.extend_from_slice(MASK.as_bytes());
                    i += p.len();
                    masked_any = true;
                }
                None => {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
        }
        if !masked_any {
            return text.to_owned();
        }
        // A secret that is not valid UTF-8 on its own may end inside a multi-byte character;
        // the lossy conversion keeps the output a valid string.
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn trim_newline(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// RFC 4648 base64 with padding.
fn encode(data: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for k in 0..4 {
            if k < chars {
                out.push(char::from(alphabet[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The base64 characters determined only by `data` when it starts `offset` bytes into the
/// encoded input: characters mixing in bits of neighbouring bytes are dropped at both ends.
fn aligned_fragment(data: &[u8], offset: usize, alphabet: &[u8; 64]) -> String {
    let mut shifted = vec![0u8; offset];
    shifted.extend_from_slice(data);
    let encoded = encode(&shifted, alphabet);
    let first = (offset * 8).div_ceil(6);
    let last = (shifted.len() * 8) / 6;
    encoded.get(first..last).unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker(secrets: &[&str]) -> Masker {
        Masker::new(
            &secrets
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn encode_matches_rfc4648_test_vectors() {
        // RFC 4648 section 10.
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(input.as_bytes(), STANDARD), expected);
        }
        assert_eq!(encode(&[0xfb, 0xff], URL_SAFE), "-_8=");
    }

    #[test]
    fn raw_occurrences_are_masked() {
        let m = masker(&["s3cr3t"]);
        assert_eq!(m.mask("token=s3cr3t and s3cr3t"), "token=**** and ****");
        assert_eq!(m.mask("nothing here"), "nothing here");
    }

    #[test]
    fn trailing_newline_of_a_secret_file_does_not_prevent_masking() {
        let m = masker(&["hunter2\n"]);
        assert_eq!(m.mask("pw is hunter2"), "pw is ****");
    }

    #[test]
    fn each_line_of_a_multi_line_secret_is_masked() {
        let m = masker(&["line-one-abc\nline-two-xyz\n"]);
        assert_eq!(m.mask("got line-two-xyz"), "got ****");
    }

    #[test]
    fn exact_base64_forms_are_masked() {
        let m = masker(&["abcd"]);
        // base64("abcd") = "YWJjZA==", URL-safe is the same here.
        assert_eq!(m.mask("x YWJjZA== y"), "x **** y");
        assert_eq!(m.mask("x YWJjZA y"), "x **** y");
    }

    #[test]
    fn base64_of_a_secret_embedded_in_a_longer_value_is_masked() {
        // HTTP basic auth: base64("user:" + password); the password starts at byte offset 5.
        let secret = "correct-horse-battery";
        let m = masker(&[secret]);
        for prefix in ["user:", "us:", "u:", "ab:c"] {
            let header = encode(format!("{prefix}{secret}").as_bytes(), STANDARD);
            let masked = m.mask(&format!("Authorization: Basic {header}"));
            assert!(masked.contains(MASK), "{prefix}: {masked}");
            // What remains of the encoding is at most the two characters either side.
            let remaining = masked.trim_start_matches("Authorization: Basic ").len() - MASK.len();
            assert!(remaining <= (prefix.len() * 8).div_ceil(6) + 4, "{masked}");
        }
    }

    #[test]
    fn url_safe_base64_is_masked() {
        let secret = [0xfbu8, 0xff, 0xfe, 0xfb, 0xff, 0xfe];
        let m = Masker::new(&[secret.to_vec()]);
        let url = encode(&secret, URL_SAFE);
        assert!(url.contains('-') || url.contains('_'));
        assert_eq!(m.mask(&format!("t={url}")), "t=****");
    }

    #[test]
    fn empty_secrets_mask_nothing() {
        let m = masker(&["", "\n"]);
        assert!(m.is_empty());
        assert_eq!(m.mask("abc"), "abc");
    }

    #[test]
    fn longest_overlapping_secret_wins() {
        let m = masker(&["abc", "abcdef"]);
        assert_eq!(m.mask("xabcdefx"), "x****x");
    }

    proptest::proptest! {
        /// Wherever a secret sits in a line, and whatever surrounds it, it does not survive
        /// masking, raw or base64-encoded after any prefix.
        #[test]
        fn no_secret_survives(
            secret in "[a-zA-Z0-9]{1,24}",
            before in "\\PC{0,30}",
            after in "\\PC{0,30}",
            prefix in "[a-z:]{0,5}",
        ) {
            let m = masker(&[&secret]);
            let masked = m.mask(&format!("{before}{secret}{after}"));
            proptest::prop_assert!(!masked.contains(&secret), "{:?}", masked);
            if secret.len() >= 6 {
                let encoded = encode(format!("{prefix}{secret}").as_bytes(), STANDARD);
                let masked = m.mask(&format!("Basic {encoded}"));
                proptest::prop_assert!(masked.contains(MASK), "{:?}", masked);
            }
        }
    }

    #[test]
    fn non_ascii_text_survives_masking() {
        let m = masker(&["geheim"]);
        assert_eq!(m.mask("schlüssel=geheim ✓"), "schlüssel=**** ✓");
    }
}
