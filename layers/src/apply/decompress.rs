//! Detects a layer stream's compression from its magic bytes and wraps it in a decoder.
//!
//! Layers arrive as tar, tar+gzip, tar+zstd and (for `ADD` of local archives, which Docker
//! autodetects) tar+bzip2 and tar+xz. The media type is advisory — registries mislabel blobs —
//! so, like containerd's `compression.DecompressStream`, we look at the first bytes instead.

use std::io::{self, Read};

/// The container format of a layer stream, as detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// Plain (uncompressed) tar.
    Tar,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const BZIP2_MAGIC: &[u8] = b"BZh";
const XZ_MAGIC: &[u8] = &[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];

/// How many leading bytes [`detect`] needs to decide.
pub const MAGIC_LEN: usize = 6;

/// Classifies a stream by its first (up to [`MAGIC_LEN`]) bytes; anything unknown is plain tar
/// (the tar reader then rejects it if it is not tar either).
pub fn detect(head: &[u8]) -> StreamFormat {
    if head.starts_with(GZIP_MAGIC) {
        StreamFormat::Gzip
    } else if head.starts_with(ZSTD_MAGIC) {
        StreamFormat::Zstd
    } else if head.starts_with(XZ_MAGIC) {
        StreamFormat::Xz
    } else if head.starts_with(BZIP2_MAGIC) {
        StreamFormat::Bzip2
    } else {
        StreamFormat::Tar
    }
}

/// Reads the magic bytes of `r` and returns the detected format with a reader yielding the
/// uncompressed stream (the magic bytes are replayed, nothing is lost).
pub fn decompress<'a, R: Read + 'a>(mut r: R) -> io::Result<(StreamFormat, Box<dyn Read + 'a>)> {
    let mut head = [0u8; MAGIC_LEN];
    let mut filled = 0;
    while filled < MAGIC_LEN {
        match r.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let format = detect(&head[..filled]);
    let replay = io::Cursor::new(head).take(filled as u64).chain(r);
    // Decoders read in large blocks; a BufReader keeps the small reads of the underlying
    // stream (often a network body) from becoming syscalls.
    let buffered = io::BufReader::with_capacity(256 * 1024, replay);
    let reader: Box<dyn Read + 'a> = match format {
        StreamFormat::Tar => Box::new(buffered),
        // Multi-member gzip / multi-frame zstd / multi-stream bzip2 and xz are all legal
        // concatenations (pigz -i, parallel compressors); decode every member.
        StreamFormat::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        StreamFormat::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        StreamFormat::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)),
        StreamFormat::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(buffered)),
    };
    Ok((format, reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(compressed: Vec<u8>, expect: StreamFormat) {
        let (format, mut r) = decompress(&compressed[..]).expect("decoder");
        assert_eq!(format, expect);
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("decode");
        assert_eq!(out, b"hello layer".repeat(100));
    }

    #[test]
    fn detects_and_decodes_every_format() {
        let plain = b"hello layer".repeat(100);
        roundtrip(plain.clone(), StreamFormat::Tar);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).expect("gzip");
        roundtrip(gz.finish().expect("gzip"), StreamFormat::Gzip);

        roundtrip(
            zstd::encode_all(&plain[..], 3).expect("zstd"),
            StreamFormat::Zstd,
        );

        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&plain).expect("bzip2");
        roundtrip(bz.finish().expect("bzip2"), StreamFormat::Bzip2);

        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&plain).expect("xz");
        roundtrip(xz.finish().expect("xz"), StreamFormat::Xz);
    }

    #[test]
    fn concatenated_gzip_members_are_all_decoded() {
        let mut all = Vec::new();
        for part in [
            &b"hello layer".repeat(40)[..],
            &b"hello layer".repeat(60)[..],
        ] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part).expect("gzip");
            all.extend(gz.finish().expect("gzip"));
        }
        roundtrip(all, StreamFormat::Gzip);
    }

    #[test]
    fn short_and_empty_streams_are_plain() {
        assert_eq!(detect(b""), StreamFormat::Tar);
        assert_eq!(detect(&[0x1f]), StreamFormat::Tar);
        let (format, mut r) = decompress(&b"ab"[..]).expect("plain");
        assert_eq!(format, StreamFormat::Tar);
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        assert_eq!(out, b"ab");
    }
}
