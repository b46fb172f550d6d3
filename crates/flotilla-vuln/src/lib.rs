//! Exact package version ordering for Linux distribution package managers.
//!
//! This crate owns two questions. First: given two version strings of the same
//! packaging ecosystem, which one is newer according to the package manager
//! itself? Second (modules [`advisory`], [`distro`], [`severity`],
//! [`assessment`], [`coverage`]): which advisories affect a node's installed packages, and
//! can the advisory database speak for that node at all? Vulnerability assessment depends on that answer being exactly the
//! one the distribution's tooling would give, so each ecosystem is a faithful
//! port of the reference implementation rather than a "semver-like" guess:
//!
//! * [`DebVersion`]: dpkg (`lib/dpkg/version.c` and `parsehelp.c`), as used by
//!   Debian and Ubuntu.
//! * [`RpmVersion`]: rpm 4.18 `rpmverParse`/`rpmverCmp` on top of
//!   [`rpm::rpmvercmp`], including `~` and `^`.
//! * [`ApkVersion`]: apk-tools 2.x (`src/version.c`, checked against the
//!   2.14-stable test data), as used by Alpine Linux.
//!
//! Invariants shared by every ecosystem:
//!
//! * Parsing never panics, whatever the input, and never guesses: a string
//!   the ecosystem's own validation rejects is a [`VersionError`] naming the
//!   string and the reason.
//! * `Ord` is the ecosystem's ordering, and `Eq` is "compares equal" under it.
//!   Several spellings can therefore be equal (`1.0` and `1.0-0` in dpkg), so
//!   the types deliberately do not implement `Hash`.
//! * Numeric components of any length are compared as numbers without
//!   overflow (leading zeros stripped, then length, then digits).
//! * No I/O, no allocation beyond the parsed value, no dependencies besides
//!   `thiserror`.
//!
//! ```
//! use flotilla_vuln::{compare, Ecosystem};
//! use std::cmp::Ordering;
//!
//! let eco: Ecosystem = "dpkg".parse().unwrap();
//! assert_eq!(compare(eco, "1.0~rc1-1", "1.0-1").unwrap(), Ordering::Less);
//! assert_eq!(compare(Ecosystem::Rpm, "1:1.0-1", "2.0-1").unwrap(), Ordering::Greater);
//! assert_eq!(compare(Ecosystem::Apk, "1.2_rc1-r0", "1.2-r0").unwrap(), Ordering::Less);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The advisory modules' plain data fields are named after the OSV schema fields they hold
// and documented there; their types and functions carry docs.
#[allow(missing_docs)]
pub mod advisory;
pub mod apk;
#[allow(missing_docs)]
pub mod assessment;
#[allow(missing_docs)]
pub mod coverage;
pub mod deb;
mod digits;
#[allow(missing_docs)]
pub mod distro;
mod ecosystem;
mod error;
pub mod rpm;
#[allow(missing_docs)]
pub mod severity;

pub use advisory::{
    Advisory, AdvisoryError, Affected, CompiledAdvisory, Event, EventKind, PackageVersion, Range, RangeKind,
    SeverityEntry,
};
pub use apk::ApkVersion;
pub use assessment::{
    AdvisoryMatch, Finding, InstalledPackage, ItemError, NodeVulnReport, OsFacts, PreparedNode, Verdicts, assess_node,
    match_version,
};
pub use coverage::{Coverage, EcosystemHoldings, Staleness, coverage};
pub use deb::DebVersion;
pub use distro::{Distro, OsvEcosystem, UnknownOsvEcosystem, ecosystems_for_os};
pub use ecosystem::{Ecosystem, UnknownEcosystem};
pub use error::VersionError;
pub use rpm::RpmVersion;
pub use severity::Severity;

use std::cmp::Ordering;

/// Parses `a` and `b` as versions of `eco` and compares them.
///
/// Returns [`Ordering::Less`] when `a` is older than `b`. Fails if either
/// string is not a valid version for the ecosystem (see the `parse` function
/// of [`DebVersion`], [`RpmVersion`] and [`ApkVersion`] for what is rejected).
pub fn compare(eco: Ecosystem, a: &str, b: &str) -> Result<Ordering, VersionError> {
    match eco {
        Ecosystem::Deb => Ok(DebVersion::parse(a)?.cmp(&DebVersion::parse(b)?)),
        Ecosystem::Rpm => Ok(RpmVersion::parse(a)?.cmp(&RpmVersion::parse(b)?)),
        Ecosystem::Apk => Ok(ApkVersion::parse(a)?.cmp(&ApkVersion::parse(b)?)),
    }
}
