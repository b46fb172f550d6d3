//! OSV distribution ecosystems (`Debian:12`, `Ubuntu:Pro:22.04:LTS`, `Alpine:v3.19`, ...) and
//! the mapping from a node's os-release to the ecosystems it is matched against.
//!
//! Invariants:
//! * Every accepted ecosystem names a distribution family whose version ordering this crate
//!   implements, and a release; anything else is [`UnknownOsvEcosystem`], never a guess.
//! * [`OsvEcosystem::key`] is the string the advisory index is keyed by. It is the OSV string
//!   itself, except for Red Hat, whose OSV strings carry a repository suffix
//!   (`Red Hat:enterprise_linux:9::appstream`): those of one product and release share the key
//!   `Red Hat:enterprise_linux:9`, because a node's os-release cannot say which repository a
//!   package came from.
//! * An os-release this module does not know maps to `None` ("not assessable"), so a node is
//!   never reported clean just because nothing could be matched.

use std::fmt;

use crate::Ecosystem;

/// A distribution family with OSV advisories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Distro {
    /// `Debian:N`; advisories name source packages.
    Debian,
    /// `Ubuntu:[Pro:[FIPS...:]]YY.MM[:LTS]`; advisories name source packages.
    Ubuntu,
    /// `Alpine:vX.Y`; advisories name origin packages.
    Alpine,
    /// `AlmaLinux:N`; advisories name binary packages.
    AlmaLinux,
    /// `Rocky Linux:N`; advisories name binary packages.
    RockyLinux,
    /// `Red Hat:...`; advisories name binary packages.
    RedHat,
}

impl Distro {
    /// The package manager whose version ordering the family's advisories use.
    pub fn ordering(self) -> Ecosystem {
        match self {
            Distro::Debian | Distro::Ubuntu => Ecosystem::Deb,
            Distro::Alpine => Ecosystem::Apk,
            Distro::AlmaLinux | Distro::RockyLinux | Distro::RedHat => Ecosystem::Rpm,
        }
    }

    /// Whether advisories name source packages (dpkg `Source:`, apk origin) rather than
    /// binary packages.
    pub fn names_source_packages(self) -> bool {
        matches!(self, Distro::Debian | Distro::Ubuntu | Distro::Alpine)
    }
}

/// A parsed OSV ecosystem string of a supported distribution.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OsvEcosystem {
    distro: Distro,
    raw: String,
    key: String,
}

/// An ecosystem string that names no supported distribution release.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown OSV ecosystem {0:?}: expected Debian:N, Ubuntu:[Pro:]YY.MM[:LTS], Alpine:vX.Y, AlmaLinux:N, Rocky Linux:N or Red Hat:..."
)]
pub struct UnknownOsvEcosystem(pub String);

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `YY.MM` with two-digit parts, as Ubuntu numbers its releases.
fn ubuntu_release(s: &str) -> bool {
    matches!(s.split_once('.'), Some((y, m)) if all_digits(y) && all_digits(m) && m.len() == 2)
}

impl OsvEcosystem {
    /// Parses an OSV `affected[].package.ecosystem` string.
    pub fn parse(s: &str) -> Result<Self, UnknownOsvEcosystem> {
        let unknown = || UnknownOsvEcosystem(s.to_owned());
        let (family, rest) = s.split_once(':').ok_or_else(unknown)?;
        let (distro, key) = match family {
            "Debian" if all_digits(rest) => (Distro::Debian, s.to_owned()),
            "AlmaLinux" if all_digits(rest) => (Distro::AlmaLinux, s.to_owned()),
            "Rocky Linux" if all_digits(rest) => (Distro::RockyLinux, s.to_owned()),
            "Alpine" if alpine_release(rest) => (Distro::Alpine, s.to_owned()),
            "Ubuntu" => {
                let mut parts: Vec<&str> = rest.split(':').collect();
                if parts.last() == Some(&"LTS") {
                    parts.pop();
                }
                let release = parts.pop().ok_or_else(unknown)?;
                let pocket_ok = match parts.as_slice() {
                    [] | ["Pro"] => true,
                    ["Pro", fips] => fips.starts_with("FIPS"),
                    _ => false,
                };
                if !ubuntu_release(release) || !pocket_ok {
                    return Err(unknown());
                }
                (Distro::Ubuntu, s.to_owned())
            }
            "Red Hat" => {
                // Red Hat:PRODUCT:RELEASE[::REPOSITORY]; the repository is not part of the key.
                let head = rest.split("::").next().unwrap_or_default();
                let (product, release) = head.split_once(':').ok_or_else(unknown)?;
                if product.is_empty() || release.is_empty() {
                    return Err(unknown());
                }
                (Distro::RedHat, format!("Red Hat:{product}:{release}"))
            }
            _ => return Err(unknown()),
        };
        Ok(OsvEcosystem { distro, raw: s.to_owned(), key })
    }

    /// The distribution family.
    pub fn distro(&self) -> Distro {
        self.distro
    }

    /// The string as OSV wrote it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The advisory index key (see the module documentation).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The version ordering of this ecosystem's packages.
    pub fn ordering(&self) -> Ecosystem {
        self.distro.ordering()
    }
}

fn alpine_release(rest: &str) -> bool {
    match rest.strip_prefix('v').and_then(|r| r.split_once('.')) {
        Some((major, minor)) => all_digits(major) && all_digits(minor),
        None => false,
    }
}

impl fmt::Display for OsvEcosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// The ecosystems a node is matched against, from its os-release `ID` and `VERSION_ID`.
///
/// * `debian` 12 → `Debian:12` (`VERSION_ID` is the major release; testing/sid have none and
///   are not assessable).
/// * `ubuntu` 22.04 → `Ubuntu:22.04:LTS` and `Ubuntu:Pro:22.04:LTS` (even-year `.04` releases
///   are LTS; Pro carries the ESM fixes an LTS node receives once attached); a non-LTS
///   release → `Ubuntu:23.10`. FIPS pockets are not matched: os-release does not say whether a
///   node runs FIPS packages.
/// * `alpine` 3.19.1 → `Alpine:v3.19`; an edge/pre-release `VERSION_ID` is not assessable.
/// * `almalinux` 9.3 → `AlmaLinux:9`, `rocky` 9.3 → `Rocky Linux:9`,
///   `rhel` 9.3 → `Red Hat:enterprise_linux:9` (the key of every RHEL 9 repository).
/// * anything else → `None`: not assessable.
pub fn ecosystems_for_os(id: &str, version_id: &str) -> Option<Vec<OsvEcosystem>> {
    let version_id = version_id.trim().trim_matches('"');
    let id = id.trim().trim_matches('"').to_ascii_lowercase();
    let major = version_id.split('.').next().filter(|m| all_digits(m));
    let names: Vec<String> = match id.as_str() {
        "debian" => vec![format!("Debian:{}", major.filter(|_| all_digits(version_id))?)],
        "ubuntu" => {
            if !ubuntu_release(version_id) {
                return None;
            }
            let (year, month) = version_id.split_once('.')?;
            let lts = month == "04" && year.parse::<u32>().ok()? % 2 == 0;
            if lts {
                vec![format!("Ubuntu:{version_id}:LTS"), format!("Ubuntu:Pro:{version_id}:LTS")]
            } else {
                vec![format!("Ubuntu:{version_id}")]
            }
        }
        "alpine" => {
            let mut parts = version_id.split('.');
            let (maj, min) = (parts.next()?, parts.next()?);
            // 3.19.1 is fine; "3.20_alpha20240329" (edge) is not a release.
            if !all_digits(maj) || !all_digits(min) || !parts.all(all_digits) {
                return None;
            }
            vec![format!("Alpine:v{maj}.{min}")]
        }
        "almalinux" => vec![format!("AlmaLinux:{}", major?)],
        "rocky" => vec![format!("Rocky Linux:{}", major?)],
        "rhel" => vec![format!("Red Hat:enterprise_linux:{}", major?)],
        _ => return None,
    };
    names.iter().map(|n| OsvEcosystem::parse(n).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_ecosystem_strings() {
        for (s, distro, key) in [
            ("Debian:12", Distro::Debian, "Debian:12"),
            ("Debian:7", Distro::Debian, "Debian:7"),
            ("Ubuntu:22.04:LTS", Distro::Ubuntu, "Ubuntu:22.04:LTS"),
            ("Ubuntu:23.10", Distro::Ubuntu, "Ubuntu:23.10"),
            ("Ubuntu:Pro:14.04:LTS", Distro::Ubuntu, "Ubuntu:Pro:14.04:LTS"),
            ("Ubuntu:Pro:FIPS:16.04:LTS", Distro::Ubuntu, "Ubuntu:Pro:FIPS:16.04:LTS"),
            ("Ubuntu:Pro:FIPS-updates:18.04:LTS", Distro::Ubuntu, "Ubuntu:Pro:FIPS-updates:18.04:LTS"),
            ("Alpine:v3.19", Distro::Alpine, "Alpine:v3.19"),
            ("AlmaLinux:9", Distro::AlmaLinux, "AlmaLinux:9"),
            ("Rocky Linux:8", Distro::RockyLinux, "Rocky Linux:8"),
            ("Red Hat:enterprise_linux:9::appstream", Distro::RedHat, "Red Hat:enterprise_linux:9"),
            ("Red Hat:enterprise_linux:9::baseos", Distro::RedHat, "Red Hat:enterprise_linux:9"),
            ("Red Hat:rhel_eus:9.2::baseos", Distro::RedHat, "Red Hat:rhel_eus:9.2"),
        ] {
            let e = OsvEcosystem::parse(s).unwrap_or_else(|err| panic!("{s}: {err}"));
            assert_eq!((e.distro(), e.key(), e.as_str()), (distro, key, s));
        }
    }

    #[test]
    fn rejects_unknown_ecosystems() {
        for s in [
            "",
            "Debian",
            "Debian:",
            "Debian:sid",
            "debian:12",
            "npm",
            "PyPI",
            "Ubuntu:22.04:XYZ",
            "Ubuntu:Foo:22.04",
            "Ubuntu:22.4",
            "Alpine:3.19",
            "Alpine:v3",
            "AlmaLinux:9.3",
            "Rocky Linux",
            "Red Hat",
            "Red Hat::9",
            "SUSE:Linux Enterprise Server 15",
            "Mageia:9",
        ] {
            assert!(OsvEcosystem::parse(s).is_err(), "{s:?} must be unknown");
        }
    }

    fn keys(id: &str, v: &str) -> Option<Vec<String>> {
        ecosystems_for_os(id, v).map(|list| list.iter().map(|e| e.key().to_owned()).collect())
    }

    #[test]
    fn maps_os_release_to_ecosystems() {
        assert_eq!(keys("debian", "12"), Some(vec!["Debian:12".into()]));
        assert_eq!(keys("ubuntu", "22.04"), Some(vec!["Ubuntu:22.04:LTS".into(), "Ubuntu:Pro:22.04:LTS".into()]));
        assert_eq!(keys("ubuntu", "23.10"), Some(vec!["Ubuntu:23.10".into()]));
        assert_eq!(keys("ubuntu", "23.04"), Some(vec!["Ubuntu:23.04".into()]), "odd year: not LTS");
        assert_eq!(keys("alpine", "3.19.1"), Some(vec!["Alpine:v3.19".into()]));
        assert_eq!(keys("alpine", "3.19"), Some(vec!["Alpine:v3.19".into()]));
        assert_eq!(keys("rocky", "9.3"), Some(vec!["Rocky Linux:9".into()]));
        assert_eq!(keys("almalinux", "9.4"), Some(vec!["AlmaLinux:9".into()]));
        assert_eq!(keys("rhel", "9.2"), Some(vec!["Red Hat:enterprise_linux:9".into()]));
        assert_eq!(keys("\"debian\"", "\"12\""), Some(vec!["Debian:12".into()]), "quoted os-release values");
    }

    #[test]
    fn unknown_os_is_not_assessable() {
        for (id, v) in [
            ("debian", ""),
            ("debian", "12.5"),
            ("alpine", "3.20_alpha20240329"),
            ("ubuntu", "22"),
            ("fedora", "40"),
            ("arch", ""),
            ("", ""),
            ("opensuse-leap", "15.5"),
            ("rocky", ""),
        ] {
            assert_eq!(keys(id, v), None, "{id} {v}");
        }
    }
}
