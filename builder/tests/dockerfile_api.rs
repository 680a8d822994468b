//! The frontend API as the build engine sees it (public re-exports only).

use std::collections::HashMap;

use rbuild::dockerfile::{
    expand_word, expand_words, parse, CacheSharing, CommandForm, Instruction, MountSpec,
    NetworkMode, VarLookup,
};

const SRC: &str = "\
# syntax=docker/dockerfile:1
ARG PY=3.11
FROM python:${PY}-slim AS base
WORKDIR /app
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked --network=none \\
    pip install -r requirements.txt
FROM base AS production
COPY --from=base --chown=app /app /srv
CMD [\"gunicorn\", \"app:app\"]
";

#[test]
fn engine_view_of_a_multistage_file() {
    let df = parse(SRC).expect("valid Dockerfile");
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(df.global_args.len(), 1);

    let mut globals: HashMap<String, String> = HashMap::new();
    globals.insert("PY".into(), "3.12".into());
    let from = df.stages[0]
        .from
        .node
        .expand(&globals, df.directives.escape)
        .expect("expands");
    assert_eq!(from.image, "python:3.12-slim");

    let base = df.stage_by_name_or_index("BASE").expect("stage exists");
    let run = &base.instructions[1];
    assert_eq!(run.line, 5);
    assert!(run
        .source_text(SRC)
        .ends_with("pip install -r requirements.txt"));
    let Instruction::Run(r) = &run.node else {
        panic!("RUN expected, got {:?}", run.node)
    };
    assert_eq!(r.network, Some(NetworkMode::None));
    assert!(matches!(
        &r.mounts[0],
        MountSpec::Cache { sharing: CacheSharing::Locked, target, .. } if target == "/root/.cache/pip"
    ));
    assert_eq!(
        run.node.to_string(),
        "RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked --network=none pip install -r requirements.txt"
    );

    let prod = df
        .stage_by_name_or_index("production")
        .expect("stage exists");
    assert_eq!(
        prod.instructions[1].node,
        Instruction::Cmd(CommandForm::Exec(vec!["gunicorn".into(), "app:app".into()]))
    );
    assert_eq!(
        prod.instructions[0].node.to_string(),
        "COPY --from=base --chown=app /app /srv"
    );
}

#[test]
fn errors_render_with_the_given_file_name() {
    let src = "FROM alpine\nRUN --mount=type=cache,id=../../x,target=/c true\n";
    let err = parse(src).expect_err("traversal rejected");
    let text = err.render("ci/Dockerfile.prod", src);
    assert!(text.contains("ci/Dockerfile.prod:2:13"), "{text}");
    assert!(text.contains("cache ids must not contain `..`"), "{text}");
    assert_eq!(err.diagnostics[0].line, 2);
}

#[test]
fn var_lookup_is_object_safe_and_words_split() {
    struct One;
    impl VarLookup for One {
        fn get(&self, name: &str) -> Option<&str> {
            (name == "PORTS").then_some("80 443")
        }
    }
    assert_eq!(
        expand_words("$PORTS 8080", &One, '\\').expect("ok"),
        ["80", "443", "8080"]
    );
    assert_eq!(expand_word("\"$PORTS\"", &One, '\\').expect("ok"), "80 443");
}
