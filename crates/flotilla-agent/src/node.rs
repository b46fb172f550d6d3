//! Facts about the node, read from its file system under `--root`: hostname, os-release,
//! kernel, architecture and IP addresses.
//!
//! Invariant: every path is resolved under the root. Where a sandbox root lacks a kernel
//! file (`proc/...`), the running kernel's own value is used, since a sandbox shares it.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use flotilla_proto::v1::NodeInfo;

fn read_under(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

/// `rel` under the root, else the running kernel's `/rel`.
pub(crate) fn read_kernel_file(root: &Path, rel: &str) -> Option<String> {
    read_under(root, rel).or_else(|| read_under(Path::new("/"), rel))
}

/// Parses os-release (`KEY=value`, values optionally quoted).
pub fn parse_os_release(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            Some((key.trim().to_owned(), value.replace("\\\"", "\"")))
        })
        .collect()
}

fn hostname(root: &Path) -> String {
    let from_root = if root == Path::new("/") { None } else { read_under(root, "etc/hostname") };
    from_root
        .or_else(|| read_under(Path::new("/"), "proc/sys/kernel/hostname"))
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Local IPv4 addresses from fib_trie (`|-- ADDR` followed by `/32 host LOCAL`), loopback excluded.
fn ipv4_addresses(fib_trie: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut last: Option<&str> = None;
    for line in fib_trie.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            last = Some(addr);
        } else if line.contains("/32 host LOCAL")
            && let Some(addr) = last.and_then(|a| a.parse::<Ipv4Addr>().ok())
            && !addr.is_loopback()
            && !out.contains(&addr.to_string())
        {
            out.push(addr.to_string());
        }
    }
    out
}

/// IPv6 addresses from if_inet6 (32 hex digits first on each line), loopback excluded.
fn ipv6_addresses(if_inet6: &str) -> Vec<String> {
    if_inet6
        .lines()
        .filter_map(|line| {
            let hex = line.split_whitespace().next()?;
            let bits = u128::from_str_radix(hex, 16).ok()?;
            let addr = Ipv6Addr::from(bits);
            (!addr.is_loopback()).then(|| addr.to_string())
        })
        .collect()
}

/// Everything the agent reports at connect.
pub fn collect(root: &Path) -> NodeInfo {
    let os = read_under(root, "etc/os-release").or_else(|| read_under(root, "usr/lib/os-release")).unwrap_or_default();
    let os = parse_os_release(&os);
    let get = |key: &str| os.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default();
    let mut addresses = ipv4_addresses(&read_kernel_file(root, "proc/net/fib_trie").unwrap_or_default());
    addresses.extend(ipv6_addresses(&read_kernel_file(root, "proc/net/if_inet6").unwrap_or_default()));
    NodeInfo {
        hostname: hostname(root),
        os_name: get("NAME"),
        os_version: get("VERSION_ID"),
        os_id: get("ID"),
        kernel: read_kernel_file(root, "proc/sys/kernel/osrelease").map(|k| k.trim().to_owned()).unwrap_or_default(),
        arch: std::env::consts::ARCH.to_owned(),
        agent_version: crate::VERSION.to_owned(),
        addresses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_forms() {
        let parsed = parse_os_release("# comment\nNAME=\"Rocky Linux\"\nVERSION_ID='9.3'\nID=rocky\nBROKEN LINE\n\n");
        assert_eq!(
            parsed,
            vec![
                ("NAME".into(), "Rocky Linux".into()),
                ("VERSION_ID".into(), "9.3".into()),
                ("ID".into(), "rocky".into())
            ]
        );
    }

    #[test]
    fn addresses_from_proc() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     |-- 10.1.2.3\n        /32 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\nLocal:\n     |-- 10.1.2.3\n        /32 host LOCAL\n";
        assert_eq!(ipv4_addresses(trie), vec!["10.1.2.3".to_string()]);
        let inet6 = "00000000000000000000000000000001 01 80 10 80       lo\nfe800000000000000000000000000001 02 40 20 80     eth0\nzz\n";
        assert_eq!(ipv6_addresses(inet6), vec!["fe80::1".to_string()]);
    }

    #[test]
    fn reads_under_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(dir.path().join("etc/os-release"), "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n")
            .expect("write");
        std::fs::write(dir.path().join("etc/hostname"), "sandbox-1\n").expect("write");
        let info = collect(dir.path());
        assert_eq!(
            (info.hostname.as_str(), info.os_id.as_str(), info.os_version.as_str()),
            ("sandbox-1", "alpine", "3.19.1")
        );
        assert_eq!(info.os_name, "Alpine Linux");
    }
}
