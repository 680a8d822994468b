//! Resolving `USER`/`--chown` names through an image's `/etc/passwd` and `/etc/group`.
//!
//! Follows Docker's rules (`--chown=user:group`, names or numeric ids; a user without a group
//! takes the user's primary group when named, or the same number as the uid when numeric). The
//! files are read through the stage's layers with a size cap and only when they are regular
//! files, never FIFOs or devices (CVE-2024-9676).

/// A resolved owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
}

/// Why an owner could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0:?}: no matching entry in /etc/passwd of the image (use a numeric uid, or create the user in an earlier step)")]
    NoUser(String),
    #[error("unable to find group {0:?}: no matching entry in /etc/group of the image (use a numeric gid, or create the group in an earlier step)")]
    NoGroup(String),
    #[error("invalid user specification {0:?}: expected user, user:group, uid or uid:gid")]
    Invalid(String),
}

/// One `/etc/passwd` entry that matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u64,
    pub gid: u64,
    pub home: String,
}

/// Parses `/etc/passwd` (`name:x:uid:gid:gecos:home:shell`), skipping malformed lines.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// Parses `/etc/group` (`name:x:gid:members`) into `(name, gid, members)`.
pub fn parse_group(text: &str) -> Vec<(String, u64, Vec<String>)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            let members = f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Some((f[0].to_string(), f[2].parse().ok()?, members))
        })
        .collect()
}

/// Resolves `user[:group]` with the image's passwd and group contents (`None` when the file
/// does not exist in the image).
pub fn resolve_owner(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<Owner, UserError> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() || grp == Some("") {
        return Err(UserError::Invalid(spec.to_string()));
    }
    let users = passwd.map(parse_passwd).unwrap_or_default();
    let (uid, primary_gid) = match user.parse::<u64>() {
        Ok(uid) => (uid, uid),
        Err(_) => {
            let e = users
                .iter()
                .find(|e| e.name == user)
                .ok_or_else(|| UserError::NoUser(user.to_string()))?;
            (e.uid, e.gid)
        }
    };
    let gid = match grp {
        None => primary_gid,
        Some(g) => match g.parse::<u64>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = group.map(parse_group).unwrap_or_default();
                groups
                    .iter()
                    .find(|(n, _, _)| n == g)
                    .map(|(_, gid, _)| *gid)
                    .ok_or_else(|| UserError::NoGroup(g.to_string()))?
            }
        },
    };
    Ok(Owner { uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken\napp:x:1000:1001:App:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app\napp:x:1001:\n";

    #[test]
    fn names_resolve_through_passwd_and_group() {
        let r = |s| resolve_owner(s, Some(PASSWD), Some(GROUP));
        assert_eq!(
            r("app").unwrap(),
            Owner {
                uid: 1000,
                gid: 1001
            }
        );
        assert_eq!(r("app:staff").unwrap(), Owner { uid: 1000, gid: 50 });
        assert_eq!(r("app:7").unwrap(), Owner { uid: 1000, gid: 7 });
        // Docker: a numeric uid alone uses the same number as gid.
        assert_eq!(r("42").unwrap(), Owner { uid: 42, gid: 42 });
        assert_eq!(r("42:staff").unwrap(), Owner { uid: 42, gid: 50 });
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let r = |s| resolve_owner(s, Some(PASSWD), Some(GROUP));
        assert_eq!(r("nobody"), Err(UserError::NoUser("nobody".into())));
        assert_eq!(r("app:wheel"), Err(UserError::NoGroup("wheel".into())));
        assert!(matches!(r(":x"), Err(UserError::Invalid(_))));
        assert_eq!(
            resolve_owner("app", None, None),
            Err(UserError::NoUser("app".into()))
        );
    }
}
