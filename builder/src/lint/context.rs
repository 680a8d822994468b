//! rbuild's rules about the build context: a context that holds `.git`, `node_modules`,
//! `.venv` or `__pycache__` with no `.dockerignore` (MissingDockerignore), and files that look
//! like secrets (`.env`, `*.pem`, `*.key`, `id_rsa`) that a COPY or ADD of the context would
//! bake into the image (SecretFileCopied). Both read the local context directory; a context
//! that is not a local directory (a git URL, a tar on stdin) is not looked at.

use super::rules::{MISSING_DOCKERIGNORE, SECRET_FILE_COPIED};
use super::{lines_of, Input, Sink};
use crate::context::{Context, IgnoreRules};
use crate::dockerfile::Instruction;

/// What a context should not send without a `.dockerignore`.
const HEAVY: [&str; 4] = [".git", "node_modules", ".venv", "__pycache__"];

/// Private key file names that `id_rsa` stands for.
const KEY_FILES: [&str; 4] = ["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"];

/// Whether a file name looks like it holds a secret: `.env` (and `.env.<name>`, but not the
/// example or template kinds), `*.pem`, `*.key`, an ssh private key.
pub(super) fn is_secret_file(name: &str) -> bool {
    if name == ".env" {
        return true;
    }
    if let Some(kind) = name.strip_prefix(".env.") {
        return !matches!(
            kind,
            "example" | "sample" | "template" | "dist" | "defaults"
        );
    }
    name.ends_with(".pem") || name.ends_with(".key") || KEY_FILES.contains(&name)
}

/// The `.dockerignore` rules of a local context (empty rules when it has none); `None` when
/// the context is not a local directory or the ignore file cannot be read (the build reports
/// that itself).
pub(super) fn load_ignore(input: &Input<'_>) -> Option<IgnoreRules> {
    let (dir, dockerfile) = input.context?;
    IgnoreRules::load(dir, dockerfile).ok()
}

pub(super) fn check(input: &Input<'_>, ignore: Option<&IgnoreRules>, sink: &mut Sink) {
    let (Some((dir, _)), Some(rules)) = (input.context, ignore) else {
        return;
    };
    if rules.origin().is_none() {
        let found: Vec<&str> = HEAVY
            .iter()
            .copied()
            .filter(|n| dir.join(n).symlink_metadata().is_ok())
            .collect();
        if !found.is_empty() {
            let config = sink.base.clone();
            sink.emit(
                &config,
                &MISSING_DOCKERIGNORE,
                None,
                format!(
                    "The context holds {} but has no .dockerignore: all of it is sent with the context, and a COPY of the context bakes it into the image; add a .dockerignore that lists {}",
                    found.join(", "),
                    if found.len() == 1 { "it" } else { "them" }
                ),
            );
        }
    }
    secret_files(input, dir, rules, sink);
}

/// SecretFileCopied: each COPY/ADD source from the context of a checked stage, resolved as
/// the build resolves it (after `.dockerignore`), that is or contains a secret-looking file.
fn secret_files(input: &Input<'_>, dir: &std::path::Path, rules: &IgnoreRules, sink: &mut Sink) {
    let df = input.dockerfile;
    let copies: Vec<(usize, &str, &Vec<String>)> = df
        .stages
        .iter()
        .enumerate()
        .filter(|(i, _)| input.all_stages || input.plan.is_needed(*i))
        .flat_map(|(_, s)| s.instructions.iter())
        .filter_map(|ins| match &ins.node {
            Instruction::Copy(c) | Instruction::Add(c) if c.from.is_none() => {
                Some((ins.line, ins.node.keyword(), &c.sources))
            }
            _ => None,
        })
        .collect();
    if copies.is_empty() {
        return;
    }
    // The scan is metadata only (no file is read) and leaves out what the ignore file does.
    let Ok(ctx) = Context::scan_skipping(dir, rules, None, input.skip) else {
        return;
    };
    for (line, keyword, sources) in copies {
        let mut found: Vec<String> = Vec::new();
        for src in sources {
            // Sources with variables or URLs are not resolved here.
            if src.contains('$') || super::advice::is_remote_source(src) {
                continue;
            }
            let Ok(selected) = ctx.select(src) else {
                continue;
            };
            for path in selected {
                let is_dir = ctx.get(path).is_some_and(|e| e.is_dir());
                let mut consider = |p: &str| {
                    let name = p.rsplit('/').next().unwrap_or(p);
                    if is_secret_file(name) && !found.iter().any(|f| f == p) {
                        found.push(p.to_owned());
                    }
                };
                if is_dir {
                    for (p, e) in ctx.walk_under(path) {
                        if !e.is_dir() {
                            consider(p);
                        }
                    }
                } else {
                    consider(path);
                }
            }
        }
        if found.is_empty() {
            continue;
        }
        found.sort();
        let shown: Vec<String> = found.iter().take(5).map(|f| format!("{f:?}")).collect();
        let more = if found.len() > 5 {
            format!(" and {} more", found.len() - 5)
        } else {
            String::new()
        };
        let config = sink.config_at(df, line);
        sink.emit(
            &config,
            &SECRET_FILE_COPIED,
            Some(lines_of(df, line)),
            format!(
                "{keyword} would bake secret-looking files into the image: {}{more}; list them in .dockerignore, or pass them with --secret and read them in `RUN --mount=type=secret`",
                shown.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::is_secret_file;
    use crate::dockerfile::parse;
    use crate::graph::{platform_args, BuildPlan};
    use crate::lint::testing::linux_amd64;
    use crate::lint::{run, Input};

    fn shorts_in(dir: &std::path::Path, src: &str) -> Vec<String> {
        let df = parse(src).unwrap();
        let args = BTreeMap::new();
        let pv = platform_args(&linux_amd64(), &linux_amd64());
        let plan = BuildPlan::new(&df, &[], &args, &pv).unwrap();
        let dockerfile = dir.join("Dockerfile");
        let input = Input {
            dockerfile: &df,
            plan: &plan,
            build_args: &args,
            build_arg_names: Vec::new(),
            platform_vars: &pv,
            all_stages: true,
            context: Some((dir, &dockerfile)),
            skip: &[],
            bases: &crate::lint::Bases::default(),
        };
        run(&input)
            .unwrap()
            .warnings
            .iter()
            .map(|w| w.short())
            .collect()
    }

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        dir
    }

    #[test]
    fn copy_ignored_file_as_buildkit() {
        let dir = tree(&["Dockerfile", "f"]);
        std::fs::write(dir.path().join(".dockerignore"), "\nDockerfile\n").unwrap();
        let src = "\nFROM scratch\nCOPY Dockerfile .\nADD Dockerfile /windy\nCOPY . /all\n";
        insta::assert_snapshot!(shorts_in(dir.path(), src).join("\n"), @r#"
        CopyIgnoredFile: Attempting to Copy file "Dockerfile" that is excluded by .dockerignore (line 3)
        CopyIgnoredFile: Attempting to Add file "Dockerfile" that is excluded by .dockerignore (line 4)
        "#);
        let skipped = format!("# check=skip=CopyIgnoredFile\n{src}");
        assert!(shorts_in(dir.path(), &skipped).is_empty());
        // COPY --from reads a stage, not the context.
        std::fs::write(dir.path().join(".dockerignore"), "foobar\n").unwrap();
        let staged =
            "FROM scratch AS base\nCOPY f /foobar\nFROM base\nCOPY --from=base /foobar /x\n";
        assert!(shorts_in(dir.path(), staged).is_empty());
        // With an exception the rule does not judge; `.` only when everything is excluded.
        std::fs::write(dir.path().join(".dockerignore"), "**\n!Dockerfile\n").unwrap();
        assert!(shorts_in(dir.path(), "FROM scratch\nCOPY ./Dockerfile .\n").is_empty());
        std::fs::write(dir.path().join(".dockerignore"), ".*\n").unwrap();
        assert!(shorts_in(dir.path(), "FROM scratch\nCOPY . .\n").is_empty());
        std::fs::write(dir.path().join(".dockerignore"), "*\n").unwrap();
        assert_eq!(
            shorts_in(dir.path(), "FROM scratch\nCOPY . .\n"),
            ["CopyIgnoredFile: Attempting to Copy file \".\" that is excluded by .dockerignore (line 2)"]
        );
    }

    #[test]
    fn secret_file_names() {
        for n in [
            ".env",
            ".env.production",
            "server.pem",
            "tls.key",
            "id_rsa",
            "id_ed25519",
        ] {
            assert!(is_secret_file(n), "{n}");
        }
        for n in [".env.example", "id_rsa.pub", "keys.txt", "env", "monkey"] {
            assert!(!is_secret_file(n), "{n}");
        }
    }

    #[test]
    fn missing_dockerignore_names_what_the_context_holds() {
        let dir = tree(&["node_modules/a/index.js", ".git/HEAD", "src/main.js"]);
        insta::assert_snapshot!(shorts_in(dir.path(), "FROM scratch\nCOPY src /src\n").join("\n"), @"MissingDockerignore: The context holds .git, node_modules but has no .dockerignore: all of it is sent with the context, and a COPY of the context bakes it into the image; add a .dockerignore that lists them");
        std::fs::write(dir.path().join(".dockerignore"), "node_modules\n.git\n").unwrap();
        assert!(shorts_in(dir.path(), "FROM scratch\nCOPY src /src\n").is_empty());
    }

    #[test]
    fn secret_files_a_copy_would_bake_in_unless_ignored() {
        let dir = tree(&[
            ".env",
            "certs/server.pem",
            "certs/readme.txt",
            "src/app.js",
            ".dockerignore",
        ]);
        let src = "FROM scratch\nCOPY . /app\nCOPY src /src\nCOPY certs/*.pem /certs/\n";
        insta::assert_snapshot!(shorts_in(dir.path(), src).join("\n"), @r#"
        SecretFileCopied: COPY would bake secret-looking files into the image: ".env", "certs/server.pem"; list them in .dockerignore, or pass them with --secret and read them in `RUN --mount=type=secret` (line 2)
        SecretFileCopied: COPY would bake secret-looking files into the image: "certs/server.pem"; list them in .dockerignore, or pass them with --secret and read them in `RUN --mount=type=secret` (line 4)
        "#);
        // Ignored files are not sent, so not copied (the glob COPY then trips CopyIgnoredFile).
        std::fs::write(dir.path().join(".dockerignore"), ".env\n**/*.pem\n").unwrap();
        let after = shorts_in(dir.path(), src);
        assert!(
            after.iter().all(|w| !w.starts_with("SecretFileCopied")),
            "{after:?}"
        );
    }
}
