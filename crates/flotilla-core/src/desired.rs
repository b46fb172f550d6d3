//! Desired-state actions: the document actions that make one resource on a node match what
//! the document says (`file:write`, `file:absent`, `service:ensure`, `package:ensure`,
//! `user:ensure`, `sysctl:ensure`), their inputs and the rules for their values.
//!
//! The same rules run three times: when a document is parsed (literal values), when it is
//! planned (after `{{ name }}` substitution, and for every element of `Flotilla-DesiredState`'s
//! list) and on the node before the agent touches anything ([`Resource::parse`]), so an agent
//! never trusts what a server sent it. Pure: values are text in, a typed [`Resource`] or the
//! reason out.
//!
//! Invariants: an input an action does not list is refused by name; a required input is never
//! empty; a path is absolute, without `..`, `.` or NUL (the agent resolves it under its
//! `--root`); names handed to a tool (unit, package, user, group, sysctl key) cannot start with
//! `-` and hold only the characters those tools accept, so no value is ever read as an option.

use std::collections::BTreeMap;

pub const FILE_WRITE: &str = "file:write";
pub const FILE_ABSENT: &str = "file:absent";
pub const SERVICE_ENSURE: &str = "service:ensure";
pub const PACKAGE_ENSURE: &str = "package:ensure";
pub const USER_ENSURE: &str = "user:ensure";
pub const SYSCTL_ENSURE: &str = "sysctl:ensure";

/// One desired-state action: its name and inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionSpec {
    pub name: &'static str,
    /// Every input the action takes.
    pub inputs: &'static [&'static str],
    /// The inputs it cannot do without.
    pub required: &'static [&'static str],
}

/// Every desired-state action.
pub const ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: FILE_WRITE,
        inputs: &["path", "content", "mode", "owner", "group"],
        required: &["path", "content"],
    },
    ActionSpec { name: FILE_ABSENT, inputs: &["path"], required: &["path"] },
    ActionSpec { name: SERVICE_ENSURE, inputs: &["name", "state", "enabled"], required: &["name"] },
    ActionSpec { name: PACKAGE_ENSURE, inputs: &["name", "state", "version"], required: &["name"] },
    ActionSpec { name: USER_ENSURE, inputs: &["name", "state", "uid", "groups", "shell", "home"], required: &["name"] },
    ActionSpec { name: SYSCTL_ENSURE, inputs: &["name", "value"], required: &["name", "value"] },
];

/// The action named `name`, if it is a desired-state action.
pub fn spec(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// Why a set of inputs is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    Unknown {
        input: String,
        allowed: &'static [&'static str],
    },
    Missing {
        input: &'static str,
    },
    Invalid {
        input: String,
        value: String,
        reason: String,
    },
    /// Two inputs that do not go together.
    Conflict {
        reason: String,
    },
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown { input, allowed } => {
                write!(f, "unknown input `{input}`; this action takes: {}", allowed.join(", "))
            }
            Self::Missing { input } => write!(f, "missing required input `{input}`"),
            Self::Invalid { input, value, reason } => {
                let shown: String = value.chars().take(64).collect();
                write!(f, "`{input}` {shown:?} {reason}")
            }
            Self::Conflict { reason } => f.write_str(reason),
        }
    }
}

impl std::error::Error for InputError {}

fn is_name_char(c: char, extra: &str) -> bool {
    c.is_ascii_alphanumeric() || extra.contains(c)
}

/// Checks one input's value (already substituted). `Err` is the reason, worded to follow the
/// value ("... is not an absolute path").
pub fn check_value(action: &str, input: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') && input != "content" {
        return Err("contains a NUL character".into());
    }
    match (action, input) {
        (FILE_WRITE | FILE_ABSENT, "path") => node_path(value),
        (FILE_WRITE, "content") => Ok(()),
        (FILE_WRITE, "mode") => parse_mode(value).map(|_| ()),
        (FILE_WRITE, "owner" | "group") => account(value, true),
        (SERVICE_ENSURE, "name") => unit_name(value),
        (SERVICE_ENSURE, "state") => one_of(value, &["running", "stopped"]),
        (SERVICE_ENSURE, "enabled") => one_of(value, &["true", "false"]),
        (PACKAGE_ENSURE, "name") => package_name(value),
        (PACKAGE_ENSURE, "state") => one_of(value, &["present", "absent", "latest"]),
        (PACKAGE_ENSURE, "version") => package_version(value),
        (USER_ENSURE, "name") => account(value, false),
        (USER_ENSURE, "state") => one_of(value, &["present", "absent"]),
        (USER_ENSURE, "uid") => match value.parse::<u32>() {
            Ok(uid) if uid < 4_294_967_295 => Ok(()),
            _ => Err("is not a user id (a whole number from 0 to 4294967294)".into()),
        },
        (USER_ENSURE, "groups") => {
            groups(value).iter().try_for_each(|g| account(g, false).map_err(|e| format!("(group `{g}`) {e}")))
        }
        (USER_ENSURE, "shell" | "home") => node_path(value),
        (SYSCTL_ENSURE, "name") => sysctl_name(value),
        (SYSCTL_ENSURE, "value") => {
            if value.trim().is_empty() {
                Err("is empty; give the value to set".into())
            } else if value.contains(['\n', '\r']) {
                Err("contains a line break".into())
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// Checks a complete set of inputs for `action`: unknown inputs, required ones, then each
/// value with [`check_value`]. Values `skip` says are not final yet (they hold a reference
/// resolved later) are only checked for presence.
pub fn check_inputs(
    action: &str,
    inputs: &BTreeMap<String, String>,
    skip: &dyn Fn(&str) -> bool,
) -> Result<(), InputError> {
    let Some(spec) = spec(action) else {
        return Err(InputError::Conflict { reason: format!("{action} is not a desired-state action") });
    };
    if let Some(input) = inputs.keys().find(|k| !spec.inputs.contains(&k.as_str())) {
        return Err(InputError::Unknown { input: input.clone(), allowed: spec.inputs });
    }
    for required in spec.required {
        match inputs.get(*required) {
            None => return Err(InputError::Missing { input: required }),
            Some(v) if v.is_empty() && *required != "content" => return Err(InputError::Missing { input: required }),
            Some(_) => {}
        }
    }
    for (input, value) in inputs {
        if skip(value) {
            continue;
        }
        check_value(action, input, value).map_err(|reason| InputError::Invalid {
            input: input.clone(),
            value: value.clone(),
            reason,
        })?;
    }
    if action == PACKAGE_ENSURE && inputs.contains_key("version") && inputs.get("state").is_some_and(|s| s != "present")
    {
        return Err(InputError::Conflict {
            reason: "`version` goes only with state `present` (or no state); remove one of them".into(),
        });
    }
    Ok(())
}

fn one_of(value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) { Ok(()) } else { Err(format!("is not one of: {}", allowed.join(", "))) }
}

/// An absolute path on the node, without `.`/`..` components or a trailing `/`.
fn node_path(value: &str) -> Result<(), String> {
    if !value.starts_with('/') {
        return Err("is not an absolute path; give the path as the node sees it, e.g. /etc/motd".into());
    }
    if value == "/" || value.ends_with('/') {
        return Err("names a directory, not a file".into());
    }
    if value.split('/').any(|c| c == "." || c == "..") {
        return Err("contains `.` or `..`; write the path without them".into());
    }
    if value.len() > 4096 {
        return Err("is longer than 4096 bytes".into());
    }
    Ok(())
}

/// An octal permission string such as "0644" or "755".
pub fn parse_mode(value: &str) -> Result<u32, String> {
    if !(3..=4).contains(&value.len()) || !value.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err("is not an octal mode; write three or four octal digits, e.g. \"0644\"".into());
    }
    u32::from_str_radix(value, 8).map_err(|e| e.to_string())
}

/// A user or group name as shadow-utils accepts it; `numeric` also allows a plain id.
fn account(value: &str, numeric: bool) -> Result<(), String> {
    if numeric && !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let body = value.trim_end_matches('$');
    if !first_ok || value.len() > 32 || !body.chars().all(|c| is_name_char(c, "_.-")) {
        return Err("is not a user or group name (a letter or _, then letters, digits, _ . -; at most 32)".into());
    }
    Ok(())
}

/// The comma-separated names of a `groups` input, empty entries dropped.
pub fn groups(value: &str) -> Vec<&str> {
    value.split(',').map(str::trim).filter(|g| !g.is_empty()).collect()
}

fn unit_name(value: &str) -> Result<(), String> {
    if value.starts_with('-') || value.len() > 255 || !value.chars().all(|c| is_name_char(c, ":_.@-\\")) {
        return Err("is not a systemd unit name (e.g. nginx or nginx.service)".into());
    }
    Ok(())
}

fn package_name(value: &str) -> Result<(), String> {
    let first_ok = value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if !first_ok || value.len() > 200 || !value.chars().all(|c| is_name_char(c, "+._-:")) {
        return Err("is not a package name (letters, digits and + . _ - :, not starting with -)".into());
    }
    Ok(())
}

fn package_version(value: &str) -> Result<(), String> {
    let first_ok = value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || value.len() > 200 || !value.chars().all(|c| is_name_char(c, "+.~:_-")) {
        return Err(
            "is not a package version (letters, digits and + . ~ : _ -, starting with a digit or letter)".into()
        );
    }
    Ok(())
}

fn sysctl_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 256
        && value.split(['.', '/']).all(|part| !part.is_empty() && part.chars().all(|c| is_name_char(c, "_-")));
    if !ok {
        return Err("is not a kernel parameter name (e.g. net.ipv4.ip_forward)".into());
    }
    Ok(())
}

/// What a running service should be doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Stopped,
}

/// What a package should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageState {
    /// Installed (at `version` when given).
    Present {
        version: Option<String>,
    },
    Absent,
    /// Installed at the newest version the repositories have.
    Latest,
}

/// A checked desired-state resource, ready for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    FileWrite {
        path: String,
        content: String,
        mode: Option<u32>,
        owner: Option<String>,
        group: Option<String>,
    },
    FileAbsent {
        path: String,
    },
    Service {
        unit: String,
        state: Option<RunState>,
        enabled: Option<bool>,
    },
    Package {
        name: String,
        state: PackageState,
    },
    User {
        name: String,
        present: bool,
        uid: Option<u32>,
        groups: Option<Vec<String>>,
        shell: Option<String>,
        home: Option<String>,
    },
    Sysctl {
        name: String,
        value: String,
    },
}

impl Resource {
    /// Checks `inputs` for `action` with every rule and returns the typed resource.
    pub fn parse(action: &str, inputs: &BTreeMap<String, String>) -> Result<Resource, InputError> {
        check_inputs(action, inputs, &|_| false)?;
        let get = |k: &str| inputs.get(k).cloned().filter(|v| !v.is_empty());
        let text = |k: &str| get(k).unwrap_or_default();
        Ok(match action {
            FILE_WRITE => Resource::FileWrite {
                path: text("path"),
                content: inputs.get("content").cloned().unwrap_or_default(),
                mode: get("mode").map(|m| parse_mode(&m)).transpose().map_err(|reason| InputError::Invalid {
                    input: "mode".into(),
                    value: text("mode"),
                    reason,
                })?,
                owner: get("owner"),
                group: get("group"),
            },
            FILE_ABSENT => Resource::FileAbsent { path: text("path") },
            SERVICE_ENSURE => {
                let name = text("name");
                // systemctl's own rule: a name without a type suffix is a service.
                let unit = if name.contains('.') { name } else { format!("{name}.service") };
                Resource::Service {
                    unit,
                    state: get("state").map(|s| if s == "running" { RunState::Running } else { RunState::Stopped }),
                    enabled: get("enabled").map(|e| e == "true"),
                }
            }
            PACKAGE_ENSURE => Resource::Package {
                name: text("name"),
                state: match get("state").as_deref() {
                    Some("absent") => PackageState::Absent,
                    Some("latest") => PackageState::Latest,
                    _ => PackageState::Present { version: get("version") },
                },
            },
            USER_ENSURE => Resource::User {
                name: text("name"),
                present: get("state").as_deref() != Some("absent"),
                uid: get("uid").and_then(|u| u.parse().ok()),
                groups: inputs.get("groups").map(|g| groups(g).into_iter().map(str::to_owned).collect()),
                shell: get("shell"),
                home: get("home"),
            },
            _ => Resource::Sysctl { name: text("name").replace('/', "."), value: text("value").trim().to_owned() },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn values_are_checked_per_action_and_input() {
        let good = [
            (FILE_WRITE, "path", "/etc/motd"),
            (FILE_WRITE, "mode", "0644"),
            (FILE_WRITE, "mode", "755"),
            (FILE_WRITE, "mode", "4755"),
            (FILE_WRITE, "owner", "root"),
            (FILE_WRITE, "owner", "1000"),
            (FILE_WRITE, "group", "www-data"),
            (FILE_WRITE, "content", "a\0b"),
            (SERVICE_ENSURE, "name", "nginx"),
            (SERVICE_ENSURE, "name", "getty@tty1.service"),
            (SERVICE_ENSURE, "state", "running"),
            (SERVICE_ENSURE, "enabled", "false"),
            (PACKAGE_ENSURE, "name", "libstdc++6"),
            (PACKAGE_ENSURE, "version", "1:2.3-4ubuntu1~22.04"),
            (USER_ENSURE, "uid", "1001"),
            (USER_ENSURE, "groups", "wheel, docker"),
            (USER_ENSURE, "shell", "/bin/bash"),
            (SYSCTL_ENSURE, "name", "net.ipv4.ip_forward"),
            (SYSCTL_ENSURE, "name", "net/ipv4/conf/eth0.100/forwarding"),
            (SYSCTL_ENSURE, "value", "1"),
        ];
        for (action, input, value) in good {
            assert_eq!(check_value(action, input, value), Ok(()), "{action} {input} {value:?}");
        }
        let bad = [
            (FILE_WRITE, "path", "etc/motd", "not an absolute path"),
            (FILE_WRITE, "path", "/etc/../shadow", "`..`"),
            (FILE_WRITE, "path", "/etc/", "directory"),
            (FILE_WRITE, "path", "/a\0b", "NUL"),
            (FILE_WRITE, "mode", "999", "not an octal mode"),
            (FILE_WRITE, "mode", "64", "not an octal mode"),
            (FILE_WRITE, "mode", "rw-r--r--", "not an octal mode"),
            (FILE_WRITE, "owner", "-oops", "not a user or group name"),
            (SERVICE_ENSURE, "name", "--now", "not a systemd unit name"),
            (SERVICE_ENSURE, "name", "a b", "not a systemd unit name"),
            (SERVICE_ENSURE, "state", "started", "not one of: running, stopped"),
            (SERVICE_ENSURE, "enabled", "yes", "not one of: true, false"),
            (PACKAGE_ENSURE, "name", "-y", "not a package name"),
            (PACKAGE_ENSURE, "name", "a;b", "not a package name"),
            (PACKAGE_ENSURE, "state", "installed", "not one of"),
            (PACKAGE_ENSURE, "version", "1.0 2", "not a package version"),
            (USER_ENSURE, "uid", "-1", "not a user id"),
            (USER_ENSURE, "groups", "wheel,-x", "group `-x`"),
            (USER_ENSURE, "home", "home/x", "not an absolute path"),
            (SYSCTL_ENSURE, "name", "net..x", "not a kernel parameter name"),
            (SYSCTL_ENSURE, "value", "1\nkernel.x = 2", "line break"),
            (SYSCTL_ENSURE, "value", " ", "empty"),
        ];
        for (action, input, value, fragment) in bad {
            let why = check_value(action, input, value).expect_err(value);
            assert!(why.contains(fragment), "{action} {input} {value:?}: {why}");
        }
    }

    #[test]
    fn input_sets_name_what_is_wrong() {
        let none = |_: &str| false;
        let unknown = check_inputs(FILE_WRITE, &inputs(&[("path", "/x"), ("content", ""), ("perms", "1")]), &none)
            .expect_err("unknown");
        assert_eq!(unknown.to_string(), "unknown input `perms`; this action takes: path, content, mode, owner, group");
        let missing = check_inputs(FILE_WRITE, &inputs(&[("path", "/x")]), &none).expect_err("missing");
        assert_eq!(missing, InputError::Missing { input: "content" });
        assert!(check_inputs(FILE_WRITE, &inputs(&[("path", "/x"), ("content", "")]), &none).is_ok(), "empty file");
        let missing = check_inputs(SYSCTL_ENSURE, &inputs(&[("name", "a.b"), ("value", "")]), &none).expect_err("");
        assert_eq!(missing, InputError::Missing { input: "value" });
        let deferred = inputs(&[("path", "/x"), ("content", ""), ("mode", "{{param:/m}}")]);
        assert!(check_inputs(FILE_WRITE, &deferred, &|v: &str| v.contains("{{")).is_ok());
        assert!(check_inputs(FILE_WRITE, &deferred, &none).is_err());
        let conflict =
            check_inputs(PACKAGE_ENSURE, &inputs(&[("name", "x"), ("state", "absent"), ("version", "1")]), &none)
                .expect_err("conflict");
        assert!(conflict.to_string().contains("`version` goes only with state `present`"), "{conflict}");
    }

    #[test]
    fn resources_are_typed() {
        let r = Resource::parse(
            FILE_WRITE,
            &inputs(&[("path", "/etc/motd"), ("content", "hi\n"), ("mode", "0644"), ("owner", "root")]),
        )
        .expect("valid");
        assert_eq!(
            r,
            Resource::FileWrite {
                path: "/etc/motd".into(),
                content: "hi\n".into(),
                mode: Some(0o644),
                owner: Some("root".into()),
                group: None
            }
        );
        let s = Resource::parse(SERVICE_ENSURE, &inputs(&[("name", "nginx"), ("enabled", "true")])).expect("valid");
        assert_eq!(s, Resource::Service { unit: "nginx.service".into(), state: None, enabled: Some(true) });
        let p = Resource::parse(PACKAGE_ENSURE, &inputs(&[("name", "curl"), ("version", "8.0")])).expect("valid");
        assert_eq!(
            p,
            Resource::Package { name: "curl".into(), state: PackageState::Present { version: Some("8.0".into()) } }
        );
        let u = Resource::parse(USER_ENSURE, &inputs(&[("name", "alice"), ("groups", "wheel,docker")])).expect("ok");
        assert!(matches!(u, Resource::User { present: true, groups: Some(ref g), .. } if g == &["wheel", "docker"]));
        let k =
            Resource::parse(SYSCTL_ENSURE, &inputs(&[("name", "net/ipv4/ip_forward"), ("value", " 1 ")])).expect("");
        assert_eq!(k, Resource::Sysctl { name: "net.ipv4.ip_forward".into(), value: "1".into() });
    }
}
