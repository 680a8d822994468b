//! BuildKit's `key=value,key=value` option strings (`--output`, `--cache-to`, `--secret`, ...).
//!
//! BuildKit reads these with Go's `encoding/csv`, so a field may be double-quoted to hold a comma
//! (`"dest=/tmp/a,b"`), and `""` inside quotes is a literal quote. Hand-written because no crate
//! parses one CSV record into ordered `key=value` pairs with exactly these rules.

/// Why a `key=value,...` string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    #[error("unterminated quote in {0:?}")]
    UnterminatedQuote(String),
    #[error("field {field:?} in {input:?} is not of the form key=value")]
    NotKeyValue { input: String, field: String },
}

/// Splits one CSV record into fields, honouring double quotes.
pub fn split_fields(input: &str) -> Result<Vec<String>, CsvError> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = input.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', false) if cur.is_empty() => in_quotes = true,
            ('"', true) => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    in_quotes = false;
                }
            }
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    if in_quotes {
        return Err(CsvError::UnterminatedQuote(input.to_string()));
    }
    fields.push(cur);
    Ok(fields)
}

/// Splits a record into `(key, value)` pairs; keys are lower-cased and trimmed as BuildKit does.
pub fn key_values(input: &str) -> Result<Vec<(String, String)>, CsvError> {
    split_fields(input)?
        .into_iter()
        .filter(|f| !f.trim().is_empty())
        .map(|f| match f.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_ascii_lowercase(), v.to_string())),
            None => Err(CsvError::NotKeyValue {
                input: input.to_string(),
                field: f,
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_plain_and_quoted_fields() {
        assert_eq!(
            key_values("type=local,\"dest=/tmp/a,b\",Compression=zstd").unwrap(),
            vec![
                ("type".into(), "local".into()),
                ("dest".into(), "/tmp/a,b".into()),
                ("compression".into(), "zstd".into())
            ]
        );
        assert_eq!(split_fields(r#""a""b",c"#).unwrap(), vec!["a\"b", "c"]);
    }

    #[test]
    fn rejects_bad_records() {
        assert!(matches!(
            split_fields("\"open"),
            Err(CsvError::UnterminatedQuote(_))
        ));
        assert!(matches!(
            key_values("type=oci,dest"),
            Err(CsvError::NotKeyValue { .. })
        ));
    }
}
