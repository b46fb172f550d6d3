//! The [`Ecosystem`] selector and its textual names.
//!
//! Invariant: every ecosystem has exactly one canonical name (`deb`, `rpm`,
//! `apk`), which [`Ecosystem`]'s `Display` prints and `FromStr` accepts back;
//! `FromStr` also accepts the alias `dpkg`, ignoring ASCII case, and nothing
//! else (no trimming, no guessing from distribution names).

use std::fmt;
use std::str::FromStr;

/// A packaging ecosystem whose version ordering this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ecosystem {
    /// dpkg versions (Debian, Ubuntu and derivatives).
    Deb,
    /// rpm EVR versions (Red Hat, Fedora, AlmaLinux, SUSE, ...).
    Rpm,
    /// apk-tools 2.x versions (Alpine Linux).
    Apk,
}

impl Ecosystem {
    /// The canonical lower-case name: `"deb"`, `"rpm"` or `"apk"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Rpm => "rpm",
            Ecosystem::Apk => "apk",
        }
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string names no known [`Ecosystem`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown package ecosystem {name:?}: expected one of \"deb\" (or \"dpkg\"), \"rpm\", \"apk\"")]
pub struct UnknownEcosystem {
    /// The string that was not recognised, as given.
    pub name: String,
}

impl FromStr for Ecosystem {
    type Err = UnknownEcosystem;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const NAMES: [(&str, Ecosystem); 4] =
            [("deb", Ecosystem::Deb), ("dpkg", Ecosystem::Deb), ("rpm", Ecosystem::Rpm), ("apk", Ecosystem::Apk)];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, eco)| eco)
            .ok_or_else(|| UnknownEcosystem { name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_aliases_case_insensitively() {
        for (s, eco) in [
            ("deb", Ecosystem::Deb),
            ("DPKG", Ecosystem::Deb),
            ("Deb", Ecosystem::Deb),
            ("rpm", Ecosystem::Rpm),
            ("RPM", Ecosystem::Rpm),
            ("apk", Ecosystem::Apk),
            ("aPk", Ecosystem::Apk),
        ] {
            assert_eq!(s.parse::<Ecosystem>(), Ok(eco), "{s}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for s in ["", "debian", " deb", "deb ", "alpine", "yum", "dpk"] {
            let err = s.parse::<Ecosystem>().unwrap_err();
            assert_eq!(err.name, s);
            assert!(err.to_string().contains("unknown package ecosystem"));
        }
    }

    #[test]
    fn display_round_trips() {
        for eco in [Ecosystem::Deb, Ecosystem::Rpm, Ecosystem::Apk] {
            assert_eq!(eco.to_string().parse::<Ecosystem>(), Ok(eco));
        }
    }
}
