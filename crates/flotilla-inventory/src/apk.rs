//! apk's installed database (`lib/apk/db/installed`): stanzas of `K:value` lines separated by
//! blank lines. Keys this parser does not use (file lists, checksums, new keys of newer
//! apk-tools) are ignored, as apk itself does.

use crate::dpkg::Parsed;
use crate::types::Application;

pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut entry: Vec<(char, &str)> = Vec::new();
    let mut start = 1;
    for (index, line) in text.lines().chain(std::iter::once("")).enumerate() {
        if line.is_empty() {
            if !entry.is_empty() {
                finish(&mut parsed, &entry, start);
                entry.clear();
            }
            start = index + 2;
            continue;
        }
        let mut chars = line.chars();
        match (chars.next(), chars.next()) {
            (Some(key), Some(':')) => entry.push((key, &line[key.len_utf8() + 1..])),
            _ => parsed.warnings.push(format!("apk installed: line {}: not a `K:value` line; ignored", index + 1)),
        }
    }
    parsed
}

fn finish(parsed: &mut Parsed, entry: &[(char, &str)], start: usize) {
    let get = |key: char| entry.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).filter(|v| !v.is_empty());
    let (Some(name), Some(version)) = (get('P'), get('V')) else {
        parsed.warnings.push(format!("apk installed: skipped the entry at line {start}: it needs both P: and V:"));
        return;
    };
    parsed.items.push(Application {
        name: name.to_owned(),
        version: version.to_owned(),
        release: version.rsplit_once("-r").map(|(_, r)| format!("r{r}")),
        epoch: None,
        arch: get('A').map(str::to_owned),
        source_name: Some(get('o').unwrap_or(name).to_owned()),
        source_version: Some(version.to_owned()),
        package_manager: "apk".into(),
        install_time: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_packages_and_origins_ignoring_unknown_keys() {
        let text = "C:Q1abc=\nP:libcrypto3\nV:3.1.4-r5\nA:x86_64\nS:1\nI:2\nT:Crypto\no:openssl\nm:Maintainer\n\
Z9:future key\nF:lib\nR:libcrypto.so.3\n\nP:musl\nV:1.2.4_git20230717-r4\nA:x86_64\nt:1700000000\n\nV:1\n";
        let parsed = parse(text);
        assert_eq!(parsed.items.len(), 2);
        assert_eq!(parsed.items[0].source_name.as_deref(), Some("openssl"));
        assert_eq!(parsed.items[0].release.as_deref(), Some("r5"));
        assert_eq!(parsed.items[1].source_name.as_deref(), Some("musl"));
        assert_eq!(parsed.items[1].version, "1.2.4_git20230717-r4");
        assert_eq!(parsed.warnings.len(), 2, "{:?}", parsed.warnings);
    }
}
