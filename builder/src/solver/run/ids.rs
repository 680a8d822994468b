//! In `rootless` mode, the ids a step needs must exist in rbuild's user namespace: the user
//! of `USER` (uid, gid, supplementary groups) and the owners of its secret and cache mounts.
//! Checked before anything runs, so that an id the mapping lacks is named with the fix
//! instead of surfacing as `EINVAL` from `setuid` or `chown` in the sandbox.

use super::RunError;
use crate::dockerfile::MountSpec;
use crate::executor::userns::IdMap;

/// Who a step runs as: `USER` as written, uid, gid, supplementary groups.
pub(super) struct StepUser<'a> {
    pub name: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub groups: &'a [u32],
}

/// The first id of the step that `uids`/`gids` do not map, as an error.
pub(super) fn check_mapped(
    user: &StepUser<'_>,
    mounts: &[MountSpec],
    uids: &IdMap,
    gids: &IdMap,
) -> Result<(), RunError> {
    let name = if user.name.is_empty() {
        "root"
    } else {
        user.name
    };
    let mut need: Vec<(String, bool, u32)> = vec![
        (format!("the uid of USER {name}"), true, user.uid),
        (format!("the gid of USER {name}"), false, user.gid),
    ];
    for g in user.groups {
        need.push((format!("a supplementary group of USER {name}"), false, *g));
    }
    for m in mounts {
        let (what, uid, gid) = match m {
            MountSpec::Secret {
                id,
                target,
                uid,
                gid,
                ..
            } => (
                format!(
                    "secret {:?}",
                    id.as_deref().or(target.as_deref()).unwrap_or_default()
                ),
                uid,
                gid,
            ),
            MountSpec::Cache {
                target, uid, gid, ..
            } => (format!("cache mount {target}"), uid, gid),
            _ => continue,
        };
        need.push((format!("the owner of {what}"), true, uid.unwrap_or(0)));
        need.push((format!("the group of {what}"), false, gid.unwrap_or(0)));
    }
    for (what, is_uid, id) in need {
        let map = if is_uid { uids } else { gids };
        if !map.maps(id) {
            return Err(RunError::UnmappedId {
                what,
                kind: if is_uid { "uid" } else { "gid" },
                id,
                map: map.describe(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, id: u32) -> StepUser<'_> {
        StepUser {
            name,
            uid: id,
            gid: id,
            groups: if id == 0 { &[0] } else { &[1000] },
        }
    }

    #[test]
    fn ids_the_namespace_lacks_are_named_with_the_fix() {
        let single = IdMap::parse("0 1000 1").unwrap();
        let full = IdMap::parse("0 1000 1\n1 100000 65536").unwrap();
        assert!(check_mapped(&user("", 0), &[], &single, &single).is_ok());
        let e = check_mapped(&user("app", 1000), &[], &single, &single).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("the uid of USER app (uid 1000)"), "{text}");
        assert!(text.contains("/etc/subuid"), "{text}");
        assert!(check_mapped(&user("app", 1000), &[], &full, &full).is_ok());
        let secret = MountSpec::Secret {
            id: Some("tok".into()),
            target: None,
            env: None,
            required: false,
            mode: None,
            uid: Some(70000),
            gid: None,
        };
        let e = check_mapped(&user("", 0), &[secret], &full, &full).unwrap_err();
        assert!(
            e.to_string()
                .contains("the owner of secret \"tok\" (uid 70000)"),
            "{e}"
        );
    }
}
