//! rbuild's own rules about how a Dockerfile is written, from the advice users read about
//! image builds: copy the dependency manifests and install before copying the whole context
//! (CopyAllBeforeDependencyInstall), pin base images (FloatingBaseTag), and keep secrets out
//! of `--build-arg` (SecretLikeBuildArg). Each is documented in `docs/checks/<Name>.md`.

use std::str::FromStr;

use super::dispatch::is_secret_name;
use super::rules::{COPY_ALL_BEFORE_DEPENDENCY_INSTALL, FLOATING_BASE_TAG, SECRET_LIKE_BUILD_ARG};
use super::{lines_of, Input, Lines, Sink};
use crate::dockerfile::{CommandForm, CopyInstruction, Instruction};
use crate::graph::Base;

/// Whether an ADD source is fetched rather than read from the context (a URL or git).
pub(super) fn is_remote_source(src: &str) -> bool {
    src.contains("://") || src.starts_with("git@")
}

/// A dependency installer: how a RUN command starts, and the files it installs from.
struct Installer {
    /// Words a command segment starts with (after `sudo`/`env` prefixes are skipped).
    words: &'static [&'static str],
    manifests: &'static [&'static str],
}

const INSTALLERS: &[Installer] = &[
    Installer {
        words: &["npm", "ci"],
        manifests: &["package.json", "package-lock.json*"],
    },
    Installer {
        words: &["npm", "install"],
        manifests: &["package.json", "package-lock.json*"],
    },
    Installer {
        words: &["npm", "i"],
        manifests: &["package.json", "package-lock.json*"],
    },
    Installer {
        words: &["yarn", "install"],
        manifests: &["package.json", "yarn.lock"],
    },
    Installer {
        words: &["pnpm", "install"],
        manifests: &["package.json", "pnpm-lock.yaml"],
    },
    Installer {
        words: &["poetry", "install"],
        manifests: &["pyproject.toml", "poetry.lock"],
    },
    Installer {
        words: &["pipenv", "install"],
        manifests: &["Pipfile", "Pipfile.lock"],
    },
    Installer {
        words: &["uv", "sync"],
        manifests: &["pyproject.toml", "uv.lock"],
    },
    Installer {
        words: &["bundle", "install"],
        manifests: &["Gemfile", "Gemfile.lock"],
    },
    Installer {
        words: &["go", "mod", "download"],
        manifests: &["go.mod", "go.sum"],
    },
    Installer {
        words: &["cargo", "fetch"],
        manifests: &["Cargo.toml", "Cargo.lock"],
    },
    Installer {
        words: &["composer", "install"],
        manifests: &["composer.json", "composer.lock"],
    },
    Installer {
        words: &["dotnet", "restore"],
        manifests: &["*.csproj"],
    },
];

/// A dependency install found in a RUN command: the command as written and the manifests.
#[derive(Debug, PartialEq, Eq)]
struct Install {
    command: String,
    manifests: Vec<String>,
}

/// The first dependency install in a shell command: its `&&`/`;`/`|`/newline-separated
/// segments are compared word by word with [`INSTALLERS`]; `pip install -r FILE` installs
/// from FILE.
fn find_install(script: &str) -> Option<Install> {
    let normalized = script
        .replace("&&", ";")
        .replace("||", ";")
        .replace(['|', '\n'], ";");
    for segment in normalized.split(';') {
        let words: Vec<&str> = segment.split_whitespace().collect();
        let start = words
            .iter()
            .position(|w| !matches!(*w, "sudo" | "env") && !w.contains('='))
            .unwrap_or(words.len());
        let words = &words[start..];
        let command = words.join(" ");
        for inst in INSTALLERS {
            if words.len() >= inst.words.len() && words[..inst.words.len()] == *inst.words {
                return Some(Install {
                    command,
                    manifests: inst.manifests.iter().map(|m| m.to_string()).collect(),
                });
            }
        }
        let pip = words
            .iter()
            .position(|w| matches!(*w, "pip" | "pip3"))
            .filter(|&i| words.get(i + 1) == Some(&"install"));
        if let Some(i) = pip {
            let rest = &words[i + 2..];
            let files: Vec<String> = rest
                .iter()
                .enumerate()
                .filter(|(_, w)| matches!(**w, "-r" | "--requirement"))
                .filter_map(|(j, _)| rest.get(j + 1).map(|f| f.to_string()))
                .collect();
            if !files.is_empty() {
                return Some(Install {
                    command,
                    manifests: files,
                });
            }
        }
    }
    None
}

/// Whether a COPY/ADD copies the whole context (`.`, `./`, `/`).
fn copies_whole_context(c: &CopyInstruction) -> bool {
    c.from.is_none()
        && c.sources
            .iter()
            .any(|s| crate::context::gopath::clean(&format!("/{s}")) == "/")
}

/// The directory form of a COPY destination, for the suggested manifest COPY.
fn as_dir(dest: &str) -> String {
    if dest.ends_with('/') {
        dest.to_owned()
    } else if dest == "." {
        "./".to_owned()
    } else {
        format!("{dest}/")
    }
}

pub(super) fn check(input: &Input<'_>, sink: &mut Sink) {
    let df = input.dockerfile;
    for (i, stage) in df.stages.iter().enumerate() {
        if !(input.all_stages || input.plan.is_needed(i)) {
            continue;
        }
        floating_base(input, sink, i);
        let mut copy_all: Option<(usize, &CopyInstruction, String)> = None;
        for ins in &stage.instructions {
            match &ins.node {
                Instruction::Copy(c) | Instruction::Add(c)
                    if copy_all.is_none() && copies_whole_context(c) =>
                {
                    let kw = df
                        .facts_at(ins.line)
                        .map_or_else(|| ins.node.keyword().to_owned(), |f| f.keyword.clone());
                    copy_all = Some((ins.line, c, kw));
                }
                Instruction::Run(r) => {
                    let Some((copy_line, c, kw)) = &copy_all else {
                        continue;
                    };
                    let mut script = match &r.command {
                        CommandForm::Shell(s) => s.clone(),
                        CommandForm::Exec(words) => words.join(" "),
                    };
                    for h in &r.heredocs {
                        script.push('\n');
                        script.push_str(&h.content);
                    }
                    let Some(install) = find_install(&script) else {
                        continue;
                    };
                    let config = sink.config_at(df, *copy_line);
                    let dest = &c.dest;
                    let detail = format!(
                        "{kw} . {dest} (line {copy_line}) comes before the dependency install `{cmd}` (line {run}), so every source change reruns it; copy the manifests and install first: `{kw} {manifests} {dir}` then `RUN {cmd}` then `{kw} . {dest}`",
                        cmd = install.command,
                        run = ins.line,
                        manifests = install.manifests.join(" "),
                        dir = as_dir(dest),
                    );
                    sink.emit(
                        &config,
                        &COPY_ALL_BEFORE_DEPENDENCY_INSTALL,
                        Some(lines_of(df, *copy_line)),
                        detail,
                    );
                    // Once per stage: the suggestion fixes every install after it.
                    break;
                }
                _ => {}
            }
        }
    }
    secret_build_args(input, sink);
}

/// FloatingBaseTag: a registry base image with no tag, or `latest`, and no digest.
fn floating_base(input: &Input<'_>, sink: &mut Sink, i: usize) {
    let df = input.dockerfile;
    let (Some(stage), Some(planned)) = (df.stages.get(i), input.plan.stages.get(i)) else {
        return;
    };
    let Base::Image(name) = &planned.base else {
        return;
    };
    if name.contains("://") {
        return;
    }
    let Ok(r) = rbuild_registry::Reference::from_str(name) else {
        return;
    };
    if r.digest().is_some() {
        return;
    }
    let detail = match r.tag() {
        None => format!("Base image {name:?} has no tag, so it means latest: pin a version tag or a digest ({name}:<version> or {name}@sha256:<digest>) so that the build does not change when the image is updated"),
        Some("latest") => format!("Base image {name:?} uses the floating tag latest: pin a version tag or a digest so that the build does not change when the image is updated"),
        Some(_) => return,
    };
    let line = stage.from.line;
    let config = sink.config_at(df, line);
    sink.emit(
        &config,
        &FLOATING_BASE_TAG,
        Some(lines_of(df, line)),
        detail,
    );
}

/// SecretLikeBuildArg: a `--build-arg` whose name says it is a secret.
fn secret_build_args(input: &Input<'_>, sink: &mut Sink) {
    let config = sink.base.clone();
    for name in &input.build_arg_names {
        if !is_secret_name(name) {
            continue;
        }
        let id = name.to_ascii_lowercase();
        sink.emit(
            &config,
            &SECRET_LIKE_BUILD_ARG,
            None::<Lines>,
            format!("--build-arg {name} looks like a secret: its value is kept in the image history and in the build cache of the steps that see it; pass it with --secret id={id},env={name} and read it in `RUN --mount=type=secret,id={id}`"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::testing::{check_with, fired};

    #[test]
    fn finds_installs_in_shell_commands() {
        let i = find_install("apt-get update && npm ci --omit=dev").unwrap();
        assert_eq!(i.command, "npm ci --omit=dev");
        assert_eq!(i.manifests, ["package.json", "package-lock.json*"]);
        let i =
            find_install("python -m pip install --no-cache-dir -r requirements/prod.txt").unwrap();
        assert_eq!(i.manifests, ["requirements/prod.txt"]);
        let i = find_install("CGO_ENABLED=0 go mod download").unwrap();
        assert_eq!(i.command, "go mod download");
        assert_eq!(find_install("pip install flask"), None);
        assert_eq!(find_install("npm run build"), None);
        assert_eq!(find_install("echo npm ci"), None);
    }

    #[test]
    fn copy_all_before_install_suggests_the_reordered_lines() {
        let src = "FROM scratch\nWORKDIR /app\nCOPY . .\nRUN npm ci\nRUN npm ci\n";
        insta::assert_snapshot!(fired(src, "CopyAllBeforeDependencyInstall").join("\n"), @"CopyAllBeforeDependencyInstall: COPY . . (line 3) comes before the dependency install `npm ci` (line 4), so every source change reruns it; copy the manifests and install first: `COPY package.json package-lock.json* ./` then `RUN npm ci` then `COPY . .` (line 3)");
        // Manifests first, then the install, then the rest: nothing to say.
        let good = "FROM scratch\nWORKDIR /app\nCOPY package.json package-lock.json ./\nRUN npm ci\nCOPY . .\nRUN npm run build\n";
        assert!(fired(good, "CopyAllBeforeDependencyInstall").is_empty());
        // COPY --from of another stage is not the context.
        let staged = "FROM scratch AS a\nFROM scratch\nCOPY --from=a . .\nRUN npm ci\n";
        assert!(fired(staged, "CopyAllBeforeDependencyInstall").is_empty());
    }

    #[test]
    fn floating_base_tags() {
        assert_eq!(
            fired("FROM alpine:latest\n", "FloatingBaseTag"),
            ["FloatingBaseTag: Base image \"alpine:latest\" uses the floating tag latest: pin a version tag or a digest so that the build does not change when the image is updated (line 1)"]
        );
        assert_eq!(fired("FROM alpine\n", "FloatingBaseTag").len(), 1);
        for pinned in [
            "FROM alpine:3.20\n",
            "FROM scratch\n",
            "FROM alpine@sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
            "FROM scratch AS base\nFROM base\n",
            "# check=skip=FloatingBaseTag\nFROM alpine\n",
        ] {
            assert!(fired(pinned, "FloatingBaseTag").is_empty(), "{pinned}");
        }
        // The tag a build arg gives counts.
        let r = check_with("ARG V=latest\nFROM alpine:$V\n", &[("V", "3.20")], &[]);
        assert!(r.warnings.iter().all(|w| w.rule.name != "FloatingBaseTag"));
    }

    #[test]
    fn secret_like_build_args_never_show_values() {
        let r = check_with(
            "FROM scratch\n",
            &[("NPM_TOKEN", "hunter2"), ("VERSION", "1")],
            &[],
        );
        let text: Vec<String> = r.warnings.iter().map(|w| w.short()).collect();
        assert_eq!(text.len(), 1, "{text:?}");
        assert!(
            text[0].starts_with("SecretLikeBuildArg: --build-arg NPM_TOKEN looks like a secret")
        );
        assert!(!text[0].contains("hunter2"));
    }
}
