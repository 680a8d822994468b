//! Instructions that only edit the image config: ENV, LABEL, CMD, ENTRYPOINT, SHELL, EXPOSE,
//! VOLUME, STOPSIGNAL, HEALTHCHECK, USER, ONBUILD, MAINTAINER — with BuildKit's semantics
//! (`frontend/dockerfile/dockerfile2llb/convert.go`, the `dispatch*` functions).

use rbuild_layers::image::config::{EmptyObject, Healthcheck as ImageHealthcheck, ImageConfig};

use crate::dockerfile::{CommandForm, Healthcheck, Instruction};

/// The default `SHELL` on Linux.
pub fn default_shell() -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into()]
}

/// The shell in effect for shell-form commands.
pub fn shell_of(config: &ImageConfig) -> Vec<String> {
    config
        .config
        .as_ref()
        .and_then(|c| c.shell.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(default_shell)
}

/// Turns a command form into argv: exec form as is, shell form as `SHELL + [command]`.
pub fn command_argv(form: &CommandForm, shell: &[String]) -> Vec<String> {
    match form {
        CommandForm::Exec(v) => v.clone(),
        CommandForm::Shell(s) => {
            let mut v = shell.to_vec();
            v.push(s.clone());
            v
        }
    }
}

/// Why a metadata instruction is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("invalid port {0:?}: expected PORT[/PROTOCOL] or START-END[/PROTOCOL] with tcp, udp or sctp")]
    BadPort(String),
}

/// Expands `EXPOSE` values as Docker's `nat.ParsePortSpecs` does: `80`, `80/udp`,
/// `8000-8002/tcp` (a range becomes one entry per port).
pub fn parse_ports(spec: &str) -> Result<Vec<String>, MetaError> {
    let bad = || MetaError::BadPort(spec.to_string());
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if start > end {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// Per-stage facts BuildKit tracks beside the config.
#[derive(Debug, Clone, Default)]
pub struct MetaState {
    /// Whether this stage set CMD (ENTRYPOINT then keeps it; otherwise an inherited CMD is
    /// reset, as the Dockerfile reference says).
    pub cmd_set: bool,
}

/// Applies an expanded metadata instruction to `config`. Returns `false` when the instruction
/// is not a metadata instruction (the caller handles it).
pub fn apply(
    config: &mut ImageConfig,
    state: &mut MetaState,
    ins: &Instruction,
) -> Result<bool, MetaError> {
    match ins {
        Instruction::Env(pairs) => {
            for (k, v) in pairs {
                config.env_set(k, v);
            }
        }
        Instruction::Label(pairs) => {
            let c = config.config_mut();
            for (k, v) in pairs {
                c.labels.insert(k.clone(), v.clone());
            }
        }
        Instruction::Cmd(form) => {
            let argv = command_argv(form, &shell_of(config));
            config.config_mut().cmd = Some(argv);
            state.cmd_set = true;
        }
        Instruction::Entrypoint(form) => {
            let argv = command_argv(form, &shell_of(config));
            let c = config.config_mut();
            c.entrypoint = Some(argv);
            if !state.cmd_set {
                c.cmd = None;
            }
        }
        Instruction::Shell(argv) => config.config_mut().shell = Some(argv.clone()),
        Instruction::Expose(ports) => {
            let mut all = Vec::new();
            for p in ports {
                all.extend(parse_ports(p)?);
            }
            let c = config.config_mut();
            for p in all {
                c.exposed_ports.insert(p, EmptyObject {});
            }
        }
        Instruction::Volume(vols) => {
            let c = config.config_mut();
            for v in vols.iter().filter(|v| !v.is_empty()) {
                c.volumes.insert(v.clone(), EmptyObject {});
            }
        }
        Instruction::Stopsignal(s) => config.config_mut().stop_signal = Some(s.clone()),
        Instruction::Healthcheck(h) => {
            let hc = match h {
                Healthcheck::None => ImageHealthcheck {
                    test: vec!["NONE".into()],
                    ..Default::default()
                },
                Healthcheck::Check(c) => {
                    let test = match &c.command {
                        CommandForm::Exec(v) => {
                            let mut t = vec!["CMD".to_string()];
                            t.extend(v.iter().cloned());
                            t
                        }
                        CommandForm::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                    };
                    let ns = |d: Option<std::time::Duration>| {
                        d.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                    };
                    ImageHealthcheck {
                        test,
                        interval: ns(c.interval),
                        timeout: ns(c.timeout),
                        start_period: ns(c.start_period),
                        start_interval: ns(c.start_interval),
                        retries: i64::from(c.retries.unwrap_or(0)),
                    }
                }
            };
            config.config_mut().healthcheck = Some(hc);
        }
        Instruction::User(u) => config.config_mut().user = Some(u.clone()),
        Instruction::Onbuild(o) => config.config_mut().on_build.push(o.original.clone()),
        Instruction::Maintainer(m) => config.author = Some(m.clone()),
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_expand_like_docker() {
        assert_eq!(parse_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(parse_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(
            parse_ports("8000-8002").unwrap(),
            vec!["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        for bad in ["http", "80/icmp", "9-1", "70000", ""] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn entrypoint_resets_inherited_cmd_but_keeps_own() {
        // Dockerfile reference, ENTRYPOINT: "If CMD is defined from the base image, setting
        // ENTRYPOINT will reset CMD to an empty value."
        let mut base = ImageConfig::new("linux", "amd64");
        base.config_mut().cmd = Some(vec!["/bin/sh".into()]);
        let mut c = base.clone();
        let mut st = MetaState::default();
        apply(
            &mut c,
            &mut st,
            &Instruction::Entrypoint(CommandForm::Exec(vec!["/app".into()])),
        )
        .unwrap();
        assert_eq!(c.config.as_ref().unwrap().cmd, None);

        let mut c = base;
        let mut st = MetaState::default();
        apply(
            &mut c,
            &mut st,
            &Instruction::Cmd(CommandForm::Exec(vec!["--help".into()])),
        )
        .unwrap();
        apply(
            &mut c,
            &mut st,
            &Instruction::Entrypoint(CommandForm::Exec(vec!["/app".into()])),
        )
        .unwrap();
        assert_eq!(c.config.as_ref().unwrap().cmd, Some(vec!["--help".into()]));
    }

    #[test]
    fn shell_form_uses_the_current_shell() {
        let mut c = ImageConfig::new("linux", "amd64");
        let mut st = MetaState::default();
        apply(
            &mut c,
            &mut st,
            &Instruction::Shell(vec!["/bin/bash".into(), "-ec".into()]),
        )
        .unwrap();
        apply(
            &mut c,
            &mut st,
            &Instruction::Cmd(CommandForm::Shell("echo hi".into())),
        )
        .unwrap();
        assert_eq!(
            c.config.as_ref().unwrap().cmd,
            Some(vec!["/bin/bash".into(), "-ec".into(), "echo hi".into()])
        );
    }

    #[test]
    fn env_replaces_in_place_and_healthcheck_none() {
        let mut c = ImageConfig::new("linux", "amd64");
        let mut st = MetaState::default();
        apply(
            &mut c,
            &mut st,
            &Instruction::Env(vec![("A".into(), "1".into()), ("B".into(), "2".into())]),
        )
        .unwrap();
        apply(
            &mut c,
            &mut st,
            &Instruction::Env(vec![("A".into(), "3".into())]),
        )
        .unwrap();
        assert_eq!(c.config.as_ref().unwrap().env, vec!["A=3", "B=2"]);
        apply(
            &mut c,
            &mut st,
            &Instruction::Healthcheck(Healthcheck::None),
        )
        .unwrap();
        assert_eq!(
            c.config
                .as_ref()
                .unwrap()
                .healthcheck
                .as_ref()
                .unwrap()
                .test,
            vec!["NONE"]
        );
    }
}
