//! Golden tests over `testdata/dockerfiles*/` and property tests for the whole frontend.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// What a golden snapshot records for one Dockerfile: the AST plus the canonical line of every
/// instruction and the source text its span covers.
#[derive(Serialize)]
struct Golden<'a> {
    directives: &'a Directives,
    global_args: Vec<String>,
    stages: Vec<GoldenStage>,
    ast: &'a Dockerfile,
}

#[derive(Serialize)]
struct GoldenStage {
    from: String,
    instructions: Vec<GoldenLine>,
}

#[derive(Serialize)]
struct GoldenLine {
    line: usize,
    display: String,
    source: String,
}

fn golden(df: &Dockerfile, src: &str) -> String {
    let g = Golden {
        directives: &df.directives,
        global_args: df.global_args.iter().map(|a| a.node.to_string()).collect(),
        stages: df
            .stages
            .iter()
            .map(|s| GoldenStage {
                from: s.from.node.to_string(),
                instructions: s
                    .instructions
                    .iter()
                    .map(|i| GoldenLine {
                        line: i.line,
                        display: i.node.to_string(),
                        source: i.source_text(src).to_owned(),
                    })
                    .collect(),
            })
            .collect(),
        ast: df,
    };
    serde_json::to_string_pretty(&g).expect("AST serialises")
}

#[test]
fn golden_dockerfiles() {
    insta::glob!("../../../testdata/dockerfiles", "*/Dockerfile", |path| {
        let src = std::fs::read_to_string(path).expect("fixture readable");
        let df = match parse(&src) {
            Ok(df) => df,
            Err(e) => panic!("{}: {}", path.display(), e.render("Dockerfile", &src)),
        };
        // The canonical line must re-parse to the same instruction.
        for stage in &df.stages {
            for i in &stage.instructions {
                if i.node.to_string().contains("<<") {
                    continue; // heredoc bodies are not part of the line
                }
                let again = parse(&format!(
                    "# escape={}\nFROM x\n{}\n",
                    df.directives.escape, i.node
                ))
                .unwrap_or_else(|e| {
                    panic!("{}: re-parse of `{}` failed: {e}", path.display(), i.node)
                });
                match (&again.stages[0].instructions[0].node, &i.node) {
                    // `original` keeps the source spelling; the trigger must match.
                    (Instruction::Onbuild(a), Instruction::Onbuild(b)) => {
                        assert_eq!(a.trigger, b.trigger, "{}", path.display())
                    }
                    (a, b) => assert_eq!(a, b, "{}", path.display()),
                }
            }
        }
        insta::assert_snapshot!(golden(&df, &src));
    });
}

/// Found by the `dockerfile_parse` fuzz target: `COPY -- -- x` copies a source named `--`, but
/// its canonical line `COPY -- x` read the `--` as the end of flags and lost the source (the
/// same for a RUN command starting with `--`). The line is part of cache keys and `rbuild check`.
#[test]
fn arguments_that_look_like_flags_keep_their_end_of_flags_marker() {
    let src = "FROM a\nCOPY -- --x --y /d/\nRUN -- --version\n";
    let df = parse(src).expect("parses");
    for i in &df.stages[0].instructions {
        let line = i.node.to_string();
        let again = parse(&format!("FROM a\n{line}\n"))
            .unwrap_or_else(|e| panic!("{line:?} does not re-parse: {e}"));
        assert_eq!(again.stages[0].instructions[0].node, i.node, "{line:?}");
    }
}

#[test]
fn golden_negative_dockerfiles() {
    insta::glob!(
        "../../../testdata/dockerfiles-negative",
        "*/Dockerfile",
        |path| {
            let src = std::fs::read_to_string(path).expect("fixture readable");
            let err = match parse(&src) {
                Ok(_) => panic!("{} should fail to parse", path.display()),
                Err(e) => e,
            };
            let rendered = err.render("Dockerfile", &src);
            assert!(rendered.contains(" --> Dockerfile:"), "{rendered}");
            assert!(rendered.contains('^'), "{rendered}");
            insta::assert_snapshot!(rendered);
        }
    );
}

#[test]
fn dev_prod_pattern_stages_and_lookup() {
    let src = "FROM python:3.11-slim AS base\nWORKDIR /app\nCOPY requirements.txt .\nRUN pip install -r requirements.txt\nFROM base AS development\nCMD [\"flask\", \"run\", \"--host=0.0.0.0\", \"--reload\"]\nFROM base AS Production\nCOPY . .\nCMD [\"gunicorn\", \"--bind\", \"0.0.0.0:8000\", \"app:app\"]\n";
    let df = parse(src).expect("valid");
    assert_eq!(df.stages.len(), 3);
    assert_eq!(
        df.stage_by_name_or_index("PRODUCTION").map(|s| s.index),
        Some(2)
    );
    assert_eq!(df.stage_by_name_or_index("1").map(|s| s.index), Some(1));
    assert!(df.stage_by_name_or_index("missing").is_none());
    let dev = &df.stages[1];
    assert_eq!(dev.from.node.image, "base");
    assert_eq!(
        dev.instructions[0].node,
        Instruction::Cmd(CommandForm::Exec(vec![
            "flask".into(),
            "run".into(),
            "--host=0.0.0.0".into(),
            "--reload".into()
        ]))
    );
    assert_eq!(
        df.stages[0].instructions[2].source_text(src),
        "RUN pip install -r requirements.txt"
    );
}

#[test]
fn expansion_uses_environment_before_the_instruction() {
    let df = parse("FROM a\nENV a=new b=$a c=${a:-x}\n").expect("valid");
    let mut vars = BTreeMap::new();
    vars.insert("a".to_owned(), "old".to_owned());
    let expanded = df.stages[0].instructions[0]
        .node
        .expand(&vars, '\\')
        .expect("expands");
    assert_eq!(
        expanded,
        Instruction::Env(vec![
            ("a".into(), "new".into()),
            ("b".into(), "old".into()),
            ("c".into(), "old".into())
        ])
    );
}

#[test]
fn run_commands_are_not_expanded_but_mounts_and_copy_are() {
    let src = "FROM a\nRUN --mount=type=cache,id=$ID,target=/c echo $HOME\nCOPY --chown=$U <<EOF <<'RAW' $D/\n$X \"q\"\nEOF\n$X\nRAW\n";
    let df = parse(src).expect("valid");
    let vars: BTreeMap<String, String> = [("ID", "pip"), ("U", "app"), ("D", "/dst"), ("X", "1")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let run = df.stages[0].instructions[0]
        .node
        .expand(&vars, '\\')
        .expect("expands");
    assert_eq!(
        run.to_string(),
        "RUN --mount=type=cache,id=pip,target=/c echo $HOME"
    );
    let Instruction::Copy(copy) = df.stages[0].instructions[1]
        .node
        .expand(&vars, '\\')
        .expect("expands")
    else {
        panic!("COPY expected");
    };
    assert_eq!(copy.chown.as_deref(), Some("app"));
    assert_eq!(copy.dest, "/dst/");
    assert_eq!(copy.heredocs[0].content, "1 \"q\"\n");
    assert_eq!(copy.heredocs[1].content, "$X\n");

    let mut hostile = vars.clone();
    hostile.insert("ID".to_owned(), "../../etc".to_owned());
    let err = df.stages[0].instructions[0]
        .node
        .expand(&hostile, '\\')
        .expect_err("traversal");
    assert!(
        matches!(
            err.kind,
            ExpandErrorKind::Mount(MountError::UnsafePath { .. })
        ),
        "{err}"
    );
}

#[test]
fn from_expands_with_global_args() {
    let df = parse("ARG TAG=3.11\nFROM --platform=$P python:${TAG} AS b\n").expect("valid");
    let mut vars = BTreeMap::new();
    vars.insert("TAG".to_owned(), "3.12".to_owned());
    vars.insert("P".to_owned(), "linux/amd64".to_owned());
    let from = df.stages[0].from.node.expand(&vars, '\\').expect("expands");
    assert_eq!(
        from.to_string(),
        "FROM --platform=linux/amd64 python:3.12 AS b"
    );
    assert_eq!(df.global_args[0].node.to_string(), "ARG TAG=3.11");
}

#[test]
fn unknown_instruction_suggests_and_lists_supported() {
    let src = "FROM a\nCOPPY . .\n";
    let rendered = parse(src).expect_err("invalid").render("Dockerfile", src);
    assert!(rendered.contains("Dockerfile:2:1"), "{rendered}");
    assert!(rendered.contains("did you mean `COPY`?"), "{rendered}");
    assert!(rendered.contains("FROM, ARG, ENV"), "{rendered}");
}

#[test]
fn spans_cover_continuations_and_heredocs() {
    let src = "FROM a\nRUN echo a \\\n  b\nRUN <<EOF\nx\nEOF\nUSER me";
    let df = parse(src).expect("valid");
    let ins = &df.stages[0].instructions;
    assert_eq!(ins[0].source_text(src), "RUN echo a \\\n  b");
    assert_eq!(ins[1].source_text(src), "RUN <<EOF\nx\nEOF");
    assert_eq!((ins[2].line, ins[2].source_text(src)), (7, "USER me"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_never_panics_on_arbitrary_strings(src in ".{0,200}") {
        let _ = parse(&src);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let src = String::from_utf8_lossy(&bytes);
        if let Err(e) = parse(&src) {
            let _ = e.render("Dockerfile", &src);
        }
    }

    #[test]
    fn parse_never_panics_on_dockerfile_like_input(
        lines in prop::collection::vec(
            prop::sample::select(vec![
                "FROM a AS b", "RUN <<EOF", "EOF", "COPY <<-X /y", "\tX", "# escape=`", "RUN a \\",
                "\\", "`", "ENV a=\"b", "ONBUILD RUN <<E", "E", "HEALTHCHECK --interval=1s CMD x",
                "RUN --mount=type=cache,target=/x,id=$a y", "ARG a=${b:-c}", "\u{feff}FROM x",
                "COPY [\"a\", \"b\"]", "# comment", "", "  ", "\r", "LABEL a b", "CMD [1]",
            ]),
            0..12,
        ),
        crlf in any::<bool>(),
    ) {
        let src = lines.join(if crlf { "\r\n" } else { "\n" });
        match parse(&src) {
            Ok(df) => {
                for stage in &df.stages {
                    for i in &stage.instructions {
                        let _ = i.node.to_string();
                        let _ = i.node.expand(&NoVars, df.directives.escape);
                        prop_assert!(i.span.start <= i.span.end && i.span.end <= src.len());
                        prop_assert!(src.is_char_boundary(i.span.start) && src.is_char_boundary(i.span.end));
                    }
                }
            }
            Err(e) => {
                let _ = e.render("Dockerfile", &src);
            }
        }
    }
}

#[test]
fn run_mount_typed_options_with_variables_are_expanded_with_the_instruction() {
    let df = crate::dockerfile::parse(
        "FROM scratch\nRUN --mount=type=cache,target=/c,uid=$UID,mode=$M true\n",
    )
    .expect("parses");
    let ins = &df.stages[0].instructions[0].node;
    assert_eq!(
        ins.to_string(),
        "RUN --mount=type=cache,target=/c,uid=$UID,mode=$M true",
        "shown as written until expanded"
    );
    let vars: std::collections::BTreeMap<String, String> = [
        ("UID".to_string(), "7".to_string()),
        ("M".to_string(), "0700".to_string()),
    ]
    .into();
    let expanded = ins.expand(&vars, '\\').expect("expands");
    let Instruction::Run(r) = expanded else {
        panic!("not a RUN: {expanded:?}");
    };
    assert!(
        matches!(
            r.mounts[0],
            crate::dockerfile::MountSpec::Cache {
                uid: Some(7),
                mode: Some(0o700),
                ..
            }
        ),
        "{:?}",
        r.mounts
    );
}
