//! User-namespace id maps: what `/proc/PID/{uid,gid}_map` say, the ranges `/etc/subuid` and
//! `/etc/subgid` give a user, and the mapping a user can have on this host ([`plan`]).

use std::path::PathBuf;

use super::handover::MAP_ENV;

/// One line of a `uid_map`/`gid_map`: `count` ids from `inside` are `outside`… in the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// A `/proc/PID/{uid,gid}_map`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdMap(pub Vec<IdRange>);

impl IdMap {
    /// Parses the kernel's format (three numbers a line); `None` when it is not that.
    pub fn parse(text: &str) -> Option<IdMap> {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let n: Vec<u64> = line
                .split_whitespace()
                .map(|t| t.parse().ok())
                .collect::<Option<_>>()?;
            let [inside, outside, count] = n[..] else {
                return None;
            };
            out.push(IdRange {
                inside: u32::try_from(inside).ok()?,
                outside: u32::try_from(outside).ok()?,
                count: u32::try_from(count).ok()?,
            });
        }
        Some(IdMap(out))
    }

    /// Whether `id` exists here (is mapped).
    pub fn maps(&self, id: u32) -> bool {
        self.0
            .iter()
            .any(|r| id >= r.inside && u64::from(id) < u64::from(r.inside) + u64::from(r.count))
    }

    /// The initial namespace's map (every id to itself).
    pub fn is_initial(&self) -> bool {
        self.0
            == [IdRange {
                inside: 0,
                outside: 0,
                count: u32::MAX,
            }]
    }

    /// Only one id, 0 (a single-id map).
    pub fn is_single(&self) -> bool {
        self.0.len() == 1 && self.0[0].inside == 0 && self.0[0].count == 1
    }

    /// `0→1000, 1-65536→100000-165535`.
    pub fn describe(&self) -> String {
        let one = |r: &IdRange| {
            if r.count == 1 {
                format!("{}→{}", r.inside, r.outside)
            } else {
                let last = |start: u32| u64::from(start) + u64::from(r.count) - 1;
                format!(
                    "{}-{}→{}-{}",
                    r.inside,
                    last(r.inside),
                    r.outside,
                    last(r.outside)
                )
            }
        };
        self.0.iter().map(one).collect::<Vec<_>>().join(", ")
    }
}

/// The ranges `/etc/subuid` (or `/etc/subgid`) text gives the user `name` (or `uid`), in
/// order: `(start, count)`. Lines are `NAME_OR_ID:START:COUNT`; others are ignored.
pub fn subordinate_ranges(text: &str, name: &str, id: u32) -> Vec<(u32, u32)> {
    let id = id.to_string();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().splitn(3, ':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != name && who != id {
                return None;
            }
            let start: u32 = start.trim().parse().ok()?;
            let count: u32 = count.trim().parse().ok()?;
            (count > 0).then_some((start, count))
        })
        .collect()
}

/// How the child's namespace gets its ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapPlan {
    /// 0 → the user, then the subordinate ranges (by `newuidmap`/`newgidmap`).
    Subordinate {
        newuidmap: PathBuf,
        newgidmap: PathBuf,
        uids: Vec<(u32, u32)>,
        gids: Vec<(u32, u32)>,
    },
    /// 0 → the user only; `why` says what was missing.
    Single { why: String },
}

/// Why this process's namespace maps a single id, as its parent said (see [`MAP_ENV`]).
pub fn single_map_why() -> Option<String> {
    std::env::var(MAP_ENV).ok().filter(|w| !w.is_empty())
}

/// What a single-id map cannot do, said once where the mode is chosen.
pub const SINGLE_MAP_LIMITS: &str = "only uid 0 and gid 0 of the image exist: a RUN over a layer with files of other owners (from the base, or COPY --chown), or as a USER or with a mount of another id, fails, and steps keep the user's own supplementary groups (setgroups is denied); for more, add ranges for this user to /etc/subuid and /etc/subgid (e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`), with newuidmap/newgidmap installed (package uidmap)";

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn user_name(uid: u32) -> Option<String> {
    // /etc/passwd of the host: `name:x:uid:...`.
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
    })
}

/// The mapping the user `uid` can have on this host.
pub fn plan(uid: u32) -> MapPlan {
    let name = user_name(uid).unwrap_or_default();
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let uids = subordinate_ranges(&read("/etc/subuid"), &name, uid);
    // subgid(5) names the user (by login name or uid), not a group.
    let gids = subordinate_ranges(&read("/etc/subgid"), &name, uid);
    let who = if name.is_empty() {
        format!("uid {uid}")
    } else {
        format!("user {name}")
    };
    let (Some(newuidmap), Some(newgidmap)) = (find_tool("newuidmap"), find_tool("newgidmap"))
    else {
        return MapPlan::Single {
            why: "newuidmap and newgidmap (package uidmap) are not installed".into(),
        };
    };
    if uids.is_empty() || gids.is_empty() {
        let file = if uids.is_empty() {
            "/etc/subuid"
        } else {
            "/etc/subgid"
        };
        return MapPlan::Single {
            why: format!("{file} has no range for {who}"),
        };
    }
    MapPlan::Subordinate {
        newuidmap,
        newgidmap,
        uids,
        gids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_parse_and_answer_which_ids_exist() {
        let init = IdMap::parse("         0          0 4294967295\n").unwrap();
        assert!(init.is_initial() && init.maps(65534) && !init.is_single());
        let m = IdMap::parse("0 1000 1\n1 100000 65536\n").unwrap();
        assert!(!m.is_initial() && !m.is_single());
        assert!(m.maps(0) && m.maps(1) && m.maps(65536) && !m.maps(65537));
        assert_eq!(m.describe(), "0→1000, 1-65536→100000-165535");
        let single = IdMap::parse("0 1000 1").unwrap();
        assert!(single.is_single() && single.maps(0) && !single.maps(1000));
        assert_eq!(IdMap::parse("0 1000"), None);
        assert_eq!(IdMap::parse("0 x 1"), None);
    }

    #[test]
    fn subordinate_ranges_are_found_by_name_or_uid_in_order() {
        let text = "alice:100000:65536\n# comment\nbob:200000:10\n1001:300000:5\nbob:400000:0\nbroken\nbob:500000:7\n";
        assert_eq!(
            subordinate_ranges(text, "bob", 1001),
            [(200000, 10), (300000, 5), (500000, 7)]
        );
        assert_eq!(subordinate_ranges(text, "carol", 1002), []);
    }
}
