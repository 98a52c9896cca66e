//! Users and groups from /etc/passwd and /etc/group (envd is static: no NSS).

use std::collections::HashMap;

use crate::error::{ApiError, ApiResult};

/// Who a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name (the uid as text when not in /etc/passwd).
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (from /etc/group).
    pub groups: Vec<u32>,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// The root user (used when a request names none).
pub fn root() -> User {
    resolve("0").unwrap_or(User {
        name: "root".into(),
        uid: 0,
        gid: 0,
        groups: vec![0],
        home: "/root".into(),
        shell: "/bin/sh".into(),
    })
}

/// Resolves a user name or numeric uid; `InvalidArgument` when neither is known.
pub fn resolve(who: &str) -> ApiResult<User> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let numeric = who.parse::<u32>().ok();
    let found = passwd
        .lines()
        .filter_map(parse_passwd)
        .find(|u| match numeric {
            Some(uid) => u.uid == uid,
            None => u.name == who,
        });
    let mut user = match (found, numeric) {
        (Some(u), _) => u,
        (None, Some(uid)) => User {
            name: uid.to_string(),
            uid,
            gid: uid,
            groups: Vec::new(),
            home: "/".into(),
            shell: "/bin/sh".into(),
        },
        (None, None) => return Err(ApiError::invalid(format!("user {who}: no such user"))),
    };
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let mut groups = vec![user.gid];
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[3].split(',').any(|m| m == user.name) {
            if let Ok(gid) = f[2].parse::<u32>() {
                if !groups.contains(&gid) {
                    groups.push(gid);
                }
            }
        }
    }
    user.groups = groups;
    Ok(user)
}

fn parse_passwd(line: &str) -> Option<User> {
    let f: Vec<&str> = line.split(':').collect();
    if f.len() < 7 {
        return None;
    }
    Some(User {
        name: f[0].to_owned(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        groups: Vec::new(),
        home: f[5].to_owned(),
        shell: f[6].to_owned(),
    })
}

/// Names of users and groups by id, for listing files.
#[derive(Debug, Default)]
pub struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    /// Reads /etc/passwd and /etc/group now.
    pub fn load() -> Self {
        let mut n = Self::default();
        for line in std::fs::read_to_string("/etc/passwd")
            .unwrap_or_default()
            .lines()
        {
            if let Some(u) = parse_passwd(line) {
                n.users.entry(u.uid).or_insert(u.name);
            }
        }
        for line in std::fs::read_to_string("/etc/group")
            .unwrap_or_default()
            .lines()
        {
            let f: Vec<&str> = line.split(':').collect();
            if let (Some(name), Some(Ok(gid))) = (f.first(), f.get(2).map(|g| g.parse::<u32>())) {
                n.groups.entry(gid).or_insert_with(|| (*name).to_owned());
            }
        }
        n
    }

    /// User name of `uid` (or the number).
    pub fn user(&self, uid: u32) -> String {
        self.users
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    /// Group name of `gid` (or the number).
    pub fn group(&self, gid: u32) -> String {
        self.groups
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines() {
        let u = parse_passwd("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin");
        assert_eq!(
            u.map(|u| (u.uid, u.gid, u.home)),
            Some((65534, 65534, "/nonexistent".into()))
        );
        assert!(parse_passwd("broken:line").is_none());
    }
}
