//! rpm's database, as `rpm -qa --queryformat` prints it (see [`QUERY_FORMAT`]): the agent runs
//! the real `rpm` so that every database back end (sqlite, bdb, ndb) is read by its owner.

use crate::dpkg::Parsed;
use crate::types::Application;

/// One line per package, tab-separated.
pub const QUERY_FORMAT: &str =
    "%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\t%{INSTALLTIME}\\n";

/// rpm prints `(none)` for an absent tag.
fn tag(value: &str) -> Option<&str> {
    Some(value).filter(|v| !v.is_empty() && *v != "(none)")
}

/// `openssl-3.0.7-27.el9.src.rpm` → (`openssl`, `3.0.7-27.el9`).
fn source(srpm: &str) -> Option<(String, String)> {
    let base = srpm.strip_suffix(".src.rpm").or_else(|| srpm.strip_suffix(".nosrc.rpm"))?;
    let (rest, release) = base.rsplit_once('-')?;
    let (name, version) = rest.rsplit_once('-')?;
    Some((name.to_owned(), format!("{version}-{release}")))
}

pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    for (index, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, epoch, version, release, arch, srpm, installed] = fields[..] else {
            parsed.warnings.push(format!("rpm: line {}: expected 7 tab-separated fields; ignored", index + 1));
            continue;
        };
        let epoch = tag(epoch);
        let release = tag(release);
        let mut full = epoch.map(|e| format!("{e}:")).unwrap_or_default();
        full.push_str(version);
        if let Some(release) = release {
            full.push('-');
            full.push_str(release);
        }
        let (source_name, source_version) = match tag(srpm).and_then(source) {
            Some((n, v)) => (Some(n), Some(v)),
            None => (None, None),
        };
        parsed.items.push(Application {
            name: name.to_owned(),
            version: full,
            release: release.map(str::to_owned),
            epoch: epoch.map(str::to_owned),
            arch: tag(arch).map(str::to_owned),
            source_name,
            source_version,
            package_manager: "rpm".into(),
            install_time: tag(installed).and_then(|t| t.parse().ok()),
        });
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_version_release_and_source() {
        let text = "openssl-libs\t1\t3.0.7\t27.el9\tx86_64\topenssl-3.0.7-27.el9.src.rpm\t1700000000\n\
gpg-pubkey\t(none)\t8483c65d\t5ccc5b19\t(none)\t(none)\t1700000001\nbroken line\n";
        let parsed = parse(text);
        assert_eq!(parsed.items.len(), 2);
        let ssl = &parsed.items[0];
        assert_eq!(ssl.version, "1:3.0.7-27.el9");
        assert_eq!(
            (ssl.source_name.as_deref(), ssl.source_version.as_deref()),
            (Some("openssl"), Some("3.0.7-27.el9"))
        );
        assert_eq!(ssl.install_time, Some(1_700_000_000));
        let key = &parsed.items[1];
        assert_eq!(
            (key.version.as_str(), key.arch.as_deref(), key.source_name.as_deref()),
            ("8483c65d-5ccc5b19", None, None)
        );
        assert_eq!(parsed.warnings.len(), 1);
    }
}
