//! `COPY --chmod` values: octal (`755`, `0644`) or symbolic (`u+x,go-w`, `a=rX`), as the
//! Dockerfile reference allows since BuildKit 0.14 (symbolic modes are applied to each copied
//! file's own mode, with `X` meaning "execute if a directory or already executable by anyone").

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

/// One `who op perms` clause of a symbolic mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Bit mask of the affected classes (0o7777 limited by who; `a` when empty).
    who: u32,
    op: char,
    perms: String,
}

/// What a `--chmod` value may be, for error messages.
pub const CHMOD_EXPECTED: &str = "an octal mode such as 0755 or a symbolic one such as u+x,go-w";

/// Why a `--chmod` value is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --chmod {0:?}: use an octal mode such as 0755 or a symbolic one such as u+x,go-w")]
pub struct ChmodError(pub String);

impl Chmod {
    pub fn parse(s: &str) -> Result<Chmod, ChmodError> {
        let err = || ChmodError(s.to_string());
        if !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            let v = u32::from_str_radix(s, 8).map_err(|_| err())?;
            if v > 0o7777 {
                return Err(err());
            }
            return Ok(Chmod::Octal(v));
        }
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let op_pos = part.find(['+', '-', '=']).ok_or_else(err)?;
            let (who_s, rest) = part.split_at(op_pos);
            let mut who = 0;
            for c in who_s.chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(err()),
                };
            }
            if who == 0 {
                who = 0o7777;
            }
            let mut chars = rest.chars();
            let op = chars.next().ok_or_else(err)?;
            let perms: String = chars.collect();
            if !perms.chars().all(|c| "rwxXst".contains(c)) {
                return Err(err());
            }
            clauses.push(Clause { who, op, perms });
        }
        if clauses.is_empty() {
            return Err(err());
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The new permission bits for an entry with `mode` (permission bits only).
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                let mut m = mode & 0o7777;
                for c in clauses {
                    let mut bits = 0;
                    for p in c.perms.chars() {
                        bits |= match p {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if is_dir || mode & 0o111 != 0 => 0o111,
                            'X' => 0,
                            's' => 0o6000,
                            't' => 0o1000,
                            _ => 0,
                        };
                    }
                    let bits = bits & c.who;
                    match c.op {
                        '+' => m |= bits,
                        '-' => m &= !bits,
                        _ => m = (m & !(c.who & 0o7777)) | bits,
                    }
                }
                m
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_and_symbolic() {
        assert_eq!(Chmod::parse("755").unwrap().apply(0o600, false), 0o755);
        assert_eq!(Chmod::parse("0644").unwrap().apply(0o777, true), 0o644);
        assert_eq!(Chmod::parse("u+x").unwrap().apply(0o644, false), 0o744);
        assert_eq!(Chmod::parse("go-w").unwrap().apply(0o666, false), 0o644);
        assert_eq!(Chmod::parse("a=rX").unwrap().apply(0o640, true), 0o555);
        assert_eq!(Chmod::parse("a=rX").unwrap().apply(0o640, false), 0o444);
        assert_eq!(
            Chmod::parse("u=rwx,g=rx,o=").unwrap().apply(0o000, false),
            0o750
        );
        assert_eq!(Chmod::parse("+x").unwrap().apply(0o600, false), 0o711);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "999", "77777", "u*x", "q+x", "u+z", "rwx"] {
            assert!(Chmod::parse(bad).is_err(), "{bad}");
        }
    }
}
