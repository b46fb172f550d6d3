//! dpkg's status database (`var/lib/dpkg/status`).
//!
//! The file is RFC 822-like stanzas separated by blank lines; a line starting with a space or
//! tab continues the field before it. A stanza that cannot be read (no `Package`, no
//! `Version`, a continuation with no field before it, a line that is not `Field: value`) is
//! skipped with a warning naming its line, so one damaged entry never hides the others.

use crate::types::Application;

/// Items read and what was skipped, with why.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub items: Vec<Application>,
    pub warnings: Vec<String>,
}

/// Packages whose files are on disk: every dpkg state except `not-installed` and
/// `config-files` (removed, only configuration left).
fn on_disk(status: &str) -> bool {
    let state = status.split_whitespace().nth(2).unwrap_or("");
    !matches!(state, "" | "not-installed" | "config-files")
}

pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut fields: Vec<(&str, String)> = Vec::new();
    let mut start = 1;
    let mut broken: Option<String> = None;
    for (index, line) in text.lines().chain(std::iter::once("")).enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            if !fields.is_empty() || broken.is_some() {
                finish(&mut parsed, &fields, broken.take(), start);
            }
            fields.clear();
            start = number + 1;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match fields.last_mut() {
                Some((_, value)) => {
                    value.push('\n');
                    value.push_str(line.trim());
                }
                None => {
                    broken.get_or_insert_with(|| format!("line {number}: a continuation line with no field before it"));
                }
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value)) if !name.is_empty() && !name.contains(char::is_whitespace) => {
                fields.push((name, value.trim().to_owned()));
            }
            _ => {
                broken.get_or_insert_with(|| format!("line {number}: not a `Field: value` line"));
            }
        }
    }
    parsed
}

fn finish(parsed: &mut Parsed, fields: &[(&str, String)], broken: Option<String>, start: usize) {
    let get = |name: &str| fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let package = get("Package");
    let what = package.map_or_else(|| format!("the entry at line {start}"), |p| format!("package {p} (line {start})"));
    if let Some(why) = broken {
        parsed.warnings.push(format!("dpkg status: skipped {what}: {why}"));
        return;
    }
    let Some(name) = package.filter(|p| !p.is_empty()) else {
        parsed.warnings.push(format!("dpkg status: skipped {what}: it has no Package field"));
        return;
    };
    if !get("Status").is_some_and(on_disk) {
        return;
    }
    let Some(version) = get("Version").filter(|v| !v.is_empty()) else {
        parsed.warnings.push(format!("dpkg status: skipped {what}: it has no Version field"));
        return;
    };
    let (source_name, source_version) = match get("Source") {
        // `Source: name (version)` when the source version differs from the binary's.
        Some(source) => match source.split_once('(') {
            Some((n, v)) => (n.trim().to_owned(), v.trim_end_matches(')').trim().to_owned()),
            None => (source.trim().to_owned(), version.to_owned()),
        },
        None => (name.to_owned(), version.to_owned()),
    };
    let epoch = version.split_once(':').map(|(e, _)| e.to_owned());
    let after_epoch = version.split_once(':').map_or(version, |(_, rest)| rest);
    let release = after_epoch.rsplit_once('-').map(|(_, r)| r.to_owned());
    parsed.items.push(Application {
        name: name.to_owned(),
        version: version.to_owned(),
        release,
        epoch,
        arch: get("Architecture").map(str::to_owned),
        source_name: Some(source_name),
        source_version: Some(source_version),
        package_manager: "dpkg".into(),
        install_time: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "Package: libssl3\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\n\
Multi-Arch: same\nSource: openssl\nVersion: 3.0.11-1~deb12u2\nDescription: Secure Sockets Layer toolkit\n \
This package is part of the OpenSSL project.\n .\n More text.\n\n\
Package: bsdutils\nStatus: install ok installed\nArchitecture: amd64\nSource: util-linux (2.38.1-5+deb12u3)\n\
Version: 1:2.38.1-5+deb12u3\n\n\
Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2024a-0+deb12u1\n";

    #[test]
    fn reads_installed_packages_with_their_sources() {
        let parsed = parse(GOOD);
        assert_eq!(parsed.warnings, Vec::<String>::new());
        let names: Vec<_> = parsed.items.iter().map(|a| (a.name.as_str(), a.version.as_str())).collect();
        assert_eq!(
            names,
            [("libssl3", "3.0.11-1~deb12u2"), ("bsdutils", "1:2.38.1-5+deb12u3"), ("tzdata", "2024a-0+deb12u1")]
        );
        let ssl = &parsed.items[0];
        assert_eq!(ssl.source_name.as_deref(), Some("openssl"));
        assert_eq!(ssl.source_version.as_deref(), Some("3.0.11-1~deb12u2"));
        assert_eq!(ssl.release.as_deref(), Some("1~deb12u2"));
        let bsd = &parsed.items[1];
        assert_eq!(
            (bsd.source_name.as_deref(), bsd.source_version.as_deref()),
            (Some("util-linux"), Some("2.38.1-5+deb12u3"))
        );
        assert_eq!(bsd.epoch.as_deref(), Some("1"));
        assert_eq!(parsed.items[2].source_name.as_deref(), Some("tzdata"));
    }

    #[test]
    fn damaged_stanzas_are_skipped_with_a_reason() {
        let text = " orphan continuation\nPackage: a\nStatus: install ok installed\nVersion: 1\n\n\
Status: install ok installed\nVersion: 2\n\n\
Package: b\nStatus: install ok installed\nthis line is garbage\nVersion: 3\n\n\
Package: c\nStatus: install ok installed\n\n\
Package: d\nStatus: install ok installed\nVersion: 4\n";
        let parsed = parse(text);
        assert_eq!(parsed.items.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["d"]);
        assert_eq!(parsed.warnings.len(), 4, "{:?}", parsed.warnings);
        assert!(parsed.warnings[0].contains("continuation"), "{:?}", parsed.warnings);
        assert!(parsed.warnings[1].contains("no Package"), "{:?}", parsed.warnings);
        assert!(
            parsed.warnings[2].contains("package b") && parsed.warnings[2].contains("line 11"),
            "{:?}",
            parsed.warnings
        );
        assert!(parsed.warnings[3].contains("no Version"), "{:?}", parsed.warnings);
    }

    #[test]
    fn truncated_file_keeps_what_is_whole() {
        let cut = &GOOD[..GOOD.find("Package: tzdata").expect("test input is valid") + 20];
        let parsed = parse(cut);
        assert_eq!(parsed.items.len(), 2);
        assert_eq!(parsed.warnings.len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = parse(&text);
        }
    }
}
