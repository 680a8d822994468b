//! Who a RUN process runs as: `USER` resolved like runc's `GetExecUser`, through the image's
//! `/etc/passwd` and `/etc/group` (read with the size cap and FIFO/device refusal of
//! [`RootFs::read_small_file`]).

use super::RunError;
use crate::solver::rootfs::RootFs;
use crate::solver::users::{parse_group, parse_passwd};

/// The user a RUN process runs as (runc's `GetExecUser`): uid, gid, supplementary groups, home.
pub(super) fn resolve_user(
    spec: &str,
    rootfs: &RootFs,
) -> Result<(u32, u32, Vec<u32>, String), RunError> {
    if spec.is_empty() {
        return Ok((0, 0, Vec::new(), "/root".into()));
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if u.is_empty() || g == Some("") {
        return Err(RunError::BadUser(spec.into()));
    }
    let users = rootfs
        .read_small_file("/etc/passwd")
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let groups = rootfs
        .read_small_file("/etc/group")
        .map(|t| parse_group(&t))
        .unwrap_or_default();
    let entry = match u.parse::<u32>() {
        Ok(uid) => users.iter().find(|e| e.uid == u64::from(uid)),
        Err(_) => Some(
            users
                .iter()
                .find(|e| e.name == u)
                .ok_or_else(|| RunError::NoUser(u.into()))?,
        ),
    };
    let to32 = |v: u64| u32::try_from(v).map_err(|_| RunError::BadUser(spec.into()));
    let uid = match (u.parse::<u32>(), entry) {
        (Ok(uid), _) => uid,
        (Err(_), Some(e)) => to32(e.uid)?,
        (Err(_), None) => return Err(RunError::NoUser(u.into())),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => to32(
                groups
                    .iter()
                    .find(|(n, _, _)| n == g)
                    .map(|(_, gid, _)| *gid)
                    .ok_or_else(|| RunError::NoGroup(g.into()))?,
            )?,
        },
        None => entry.map(|e| to32(e.gid)).transpose()?.unwrap_or(0),
    };
    let mut extra = Vec::new();
    if let Some(e) = entry {
        for (_, id, members) in &groups {
            if members.contains(&e.name) {
                let id = to32(*id)?;
                if !extra.contains(&id) {
                    extra.push(id);
                }
            }
        }
    }
    if !extra.contains(&gid) {
        extra.insert(0, gid);
    }
    let home = entry
        .map(|e| e.home.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into());
    Ok((uid, gid, extra, home))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_like_runc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nstaff:x:50:app,other\n",
        )
        .unwrap();
        let fs = RootFs {
            lowers: vec![dir.path().to_path_buf()],
        };
        assert_eq!(
            resolve_user("app", &fs).unwrap(),
            (1000, 1000, vec![1000, 50], "/home/app".into())
        );
        assert_eq!(resolve_user("app:0", &fs).unwrap().1, 0);
        // A uid not in passwd runs with gid 0 and home /.
        assert_eq!(
            resolve_user("4242", &fs).unwrap(),
            (4242, 0, vec![0], "/".into())
        );
        assert!(matches!(
            resolve_user("nobody", &fs),
            Err(RunError::NoUser(_))
        ));
        assert!(matches!(
            resolve_user("app:wheel", &fs),
            Err(RunError::NoGroup(_))
        ));
    }
}
