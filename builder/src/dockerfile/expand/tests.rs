use super::*;
use proptest::prelude::*;

mod cases;
use cases::{WordsStep, ENV_VAR_CASES, WORDS_CASES};

fn buildkit_test_env() -> BTreeMap<String, String> {
    [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[test]
fn buildkit_env_var_test_cases() {
    let env = buildkit_test_env();
    let mut failures = Vec::new();
    for (input, expected) in ENV_VAR_CASES {
        let got = match expand_word(input, &env, '\\') {
            Ok(w) => w,
            Err(_) => "error".to_owned(),
        };
        if got != *expected {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn buildkit_words_test_cases() {
    let mut env = BTreeMap::new();
    let mut failures = Vec::new();
    for step in WORDS_CASES {
        match step {
            WordsStep::Env(k, v) => {
                env.insert((*k).to_owned(), (*v).to_owned());
            }
            WordsStep::Case(input, expected) => {
                let got = match expand_words(input, &env, '\\') {
                    Ok(w) => w.join(","),
                    Err(_) => "error".to_owned(),
                };
                if got != *expected {
                    failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn required_variable_error_names_the_variable_and_message() {
    let err = expand_word("${A:?must be set}", &NoVars, '\\').expect_err("A is unset");
    assert_eq!(
        err.kind,
        ExpandErrorKind::Required {
            name: "A".into(),
            message: "must be set".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "failed to process \"${A:?must be set}\": A: must be set"
    );
}

#[test]
fn backtick_escape_token_escapes_and_backslash_is_literal() {
    let env = buildkit_test_env();
    assert_eq!(
        expand_word(r"C:\path`$PWD", &env, '`').expect("valid"),
        r"C:\path$PWD"
    );
    assert_eq!(
        expand_word(r"C:\path\$PWD", &env, '`').expect("valid"),
        r"C:\path\/home"
    );
}

#[test]
fn unset_and_empty_differ_for_dash_and_plus_without_colon() {
    let env = buildkit_test_env();
    assert_eq!(expand_word("${NULL-d}", &env, '\\').expect("valid"), "");
    assert_eq!(expand_word("${NULL:-d}", &env, '\\').expect("valid"), "d");
    assert_eq!(expand_word("${NULL+a}", &env, '\\').expect("valid"), "a");
    assert_eq!(expand_word("${NULL:+a}", &env, '\\').expect("valid"), "");
    assert_eq!(expand_word("${UNSET-d}", &env, '\\').expect("valid"), "d");
    assert_eq!(expand_word("${UNSET+a}", &env, '\\').expect("valid"), "");
}

#[test]
fn prefix_suffix_and_replace_modifiers() {
    let mut env = BTreeMap::new();
    env.insert("F".to_owned(), "archive.tar.gz".to_owned());
    let cases = [
        ("${F%.*}", "archive.tar"),
        ("${F%%.*}", "archive"),
        ("${F#*.}", "tar.gz"),
        ("${F##*.}", "gz"),
        ("${F/a/X}", "Xrchive.tar.gz"),
        ("${F//a/X}", "Xrchive.tXr.gz"),
        ("${F/#/X}", "archive.tar.gz"),
    ];
    for (input, expected) in cases {
        assert_eq!(
            expand_word(input, &env, '\\').expect(input),
            expected,
            "{input}"
        );
    }
    assert!(expand_word("${F:#x}", &env, '\\').is_err());
}

#[test]
fn heredoc_expansion_keeps_quotes() {
    let env = buildkit_test_env();
    assert_eq!(
        expand_heredoc("echo \"$PWD\" '$SHELL'\n", &env, '\\').expect("valid"),
        "echo \"/home\" 'bash'\n"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn expand_never_panics(word in ".{0,40}", escape in prop::sample::select(vec!['\\', '`'])) {
        let env = buildkit_test_env();
        let _ = expand_word(&word, &env, escape);
        let _ = expand_words(&word, &env, escape);
        let _ = expand_heredoc(&word, &env, escape);
    }

    #[test]
    fn expand_shell_like_inputs_never_panic(word in r#"[$\{\}:+?#%/a-c\\"' *-]{0,30}"#) {
        let env = buildkit_test_env();
        let _ = expand_word(&word, &env, '\\');
        let _ = expand_words(&word, &env, '\\');
    }
}

#[test]
fn pattern_modifiers_on_long_values_are_fast() {
    let mut env = BTreeMap::new();
    env.insert("P".to_owned(), "a:".repeat(5000));
    let start = std::time::Instant::now();
    let out = expand_word("${P//:/ }", &env, '\\').expect("valid");
    assert_eq!(out.len(), 10_000);
    assert_eq!(expand_word("${P%%:*}", &env, '\\').expect("valid"), "a");
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}
