//! rpm version parsing and ordering (Red Hat, Fedora, AlmaLinux, SUSE, ...).
//!
//! A port of rpm 4.18: `rpmvercmp()` (`rpmio/rpmvercmp.c`) for one version
//! or release string, and `rpmverParse()`/`rpmverCmp()` (`rpmio/rpmver.c`)
//! for full `[EPOCH:]VERSION[-RELEASE]` strings. This is the ordering of
//! `rpm.vercmp()` and of `rpmdev-vercmp`-style EVR comparison.
//!
//! `rpmvercmp`: the strings are cut into maximal runs of ASCII digits and
//! of ASCII letters; every other byte (including all non-ASCII bytes) is a
//! separator and only ends a run. Runs are compared pairwise: numbers
//! numerically (any length), letters byte-wise, and a number is newer than
//! letters. `~` sorts before everything, including the end of the string
//! (`1.0~rc1 < 1.0`); `^` sorts after the end of the string but before
//! anything else (`1.0 < 1.0^git1 < 1.0.1`). If one string runs out, the
//! other (non-`~`) one is newer.
//!
//! EVR parsing: the epoch is a leading run of digits ended by `:` (an empty
//! one, `:1.0`, means `0`); a string whose leading digits are not followed
//! by `:` has no epoch, so a later `:` is just a separator inside the
//! version. The release is everything after the last `-` that follows the
//! epoch. Comparison: epoch (missing = `0`), then version, then release,
//! each with `rpmvercmp`, where a missing release sorts **before** any
//! release (`1.0 < 1.0-1`), exactly like `rpmverCmp`.
//!
//! Strictness: rpm's EVR parser accepts every non-empty C string, so
//! [`RpmVersion::parse`] rejects only the empty string and strings with a
//! NUL byte (which no C string can hold, so rpm could never see them).

use std::cmp::Ordering;
use std::fmt;

use crate::VersionError;
use crate::digits::{advance, cmp_digit_runs, split_while, until_nul};

/// Compares two single version (or release) strings exactly like rpm's
/// `rpmvercmp()`: no epoch or `-` handling, every string is accepted.
///
/// Returns [`Ordering::Less`] when `a` is older than `b`. As in C, a NUL
/// byte ends the string. This is a total preorder on all strings: strings
/// differing only in their separators compare equal (`2.0` = `2_0`).
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    rpmvercmp_bytes(until_nul(a.as_bytes()), until_nul(b.as_bytes()))
}

fn rpmvercmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let is_separator = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    let (mut one, mut two) = (a, b);
    loop {
        one = split_while(one, is_separator).1;
        two = split_while(two, is_separator).1;
        let (c1, c2) = (one.first().copied(), two.first().copied());

        if c1 == Some(b'~') || c2 == Some(b'~') {
            if c1 != Some(b'~') {
                return Ordering::Greater;
            }
            if c2 != Some(b'~') {
                return Ordering::Less;
            }
            one = advance(one, 1);
            two = advance(two, 1);
            continue;
        }

        // Like `~`, except that the end of the string (the base version)
        // sorts before a caret.
        if c1 == Some(b'^') || c2 == Some(b'^') {
            if c1.is_none() {
                return Ordering::Less;
            }
            if c2.is_none() {
                return Ordering::Greater;
            }
            if c1 != Some(b'^') {
                return Ordering::Greater;
            }
            if c2 != Some(b'^') {
                return Ordering::Less;
            }
            one = advance(one, 1);
            two = advance(two, 1);
            continue;
        }

        let Some(c1) = c1 else { break };
        if c2.is_none() {
            break;
        }

        // The run type is chosen by `one`; `two` is cut with the same
        // predicate, so an empty `seg2` means the run types differ.
        let is_num = c1.is_ascii_digit();
        let pred = |c: u8| {
            if is_num { c.is_ascii_digit() } else { c.is_ascii_alphabetic() }
        };
        let (seg1, rest1) = split_while(one, pred);
        let (seg2, rest2) = split_while(two, pred);
        if seg2.is_empty() {
            // A numeric run is newer than an alphabetic one.
            return if is_num { Ordering::Greater } else { Ordering::Less };
        }
        let ord = if is_num { cmp_digit_runs(seg1, seg2) } else { seg1.cmp(seg2) };
        if ord != Ordering::Equal {
            return ord;
        }
        one = rest1;
        two = rest2;
    }

    match (one.is_empty(), two.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, _) => Ordering::Greater,
    }
}

/// A parsed rpm `[EPOCH:]VERSION[-RELEASE]` string.
///
/// `Eq` and `Ord` follow `rpmverCmp`, so `"1.0-1"`, `"0:1.0-1"` and
/// `"1_0-1"` are all equal even though [`Display`](fmt::Display) prints each
/// one as written.
#[derive(Debug, Clone)]
pub struct RpmVersion {
    text: String,
    /// Digits as written (`""` before a bare `:` is stored as `"0"`).
    epoch: Option<String>,
    version: String,
    release: Option<String>,
}

impl RpmVersion {
    /// Parses `[EPOCH:]VERSION[-RELEASE]` exactly like rpm's `rpmverParse`.
    ///
    /// Rejects, with a [`VersionError::InvalidRpm`], only the empty string
    /// and strings containing a NUL byte; rpm accepts everything else.
    pub fn parse(s: &str) -> Result<Self, VersionError> {
        let err = |reason| VersionError::InvalidRpm { version: s.to_owned(), reason };
        if s.is_empty() {
            return Err(err("version string is empty"));
        }
        if s.contains('\0') {
            return Err(err("version string contains a NUL byte"));
        }

        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (epoch, rest) = match s.get(digits..).and_then(|r| r.strip_prefix(':')) {
            Some(rest) => {
                let epoch = s.get(..digits).unwrap_or_default();
                let epoch = if epoch.is_empty() { "0" } else { epoch };
                (Some(epoch.to_owned()), rest)
            }
            None => (None, s),
        };
        // The leading digits cannot contain '-', so the last '-' after them
        // is simply the last '-' of what follows the epoch.
        let (version, release) = match rest.rsplit_once('-') {
            Some((version, release)) => (version, Some(release.to_owned())),
            None => (rest, None),
        };
        Ok(RpmVersion { text: s.to_owned(), epoch, version: version.to_owned(), release })
    }

    /// The epoch digits as written, if the string has an epoch.
    ///
    /// Comparison treats a missing epoch as `0`. Epochs are compared with
    /// [`rpmvercmp`], so they may be longer than any integer type.
    pub fn epoch(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    /// The version part (between the epoch and the last `-`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The release part after the last `-`, if any.
    pub fn release(&self) -> Option<&str> {
        self.release.as_deref()
    }
}

impl Ord for RpmVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let e1 = self.epoch.as_deref().unwrap_or("0");
        let e2 = other.epoch.as_deref().unwrap_or("0");
        rpmvercmp(e1, e2).then_with(|| rpmvercmp(&self.version, &other.version)).then_with(|| {
            match (&self.release, &other.release) {
                (Some(r1), Some(r2)) => rpmvercmp(r1, r2),
                // rpmverCmp's compare_values(): a present release is newer.
                (r1, r2) => r1.is_some().cmp(&r2.is_some()),
            }
        })
    }
}

impl PartialOrd for RpmVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for RpmVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for RpmVersion {}

impl fmt::Display for RpmVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for RpmVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> RpmVersion {
        RpmVersion::parse(s).unwrap()
    }

    #[test]
    fn parses_like_rpmver_parse() {
        let x = v("2:1.0-3.el9");
        assert_eq!((x.epoch(), x.version(), x.release()), (Some("2"), "1.0", Some("3.el9")));
        let x = v(":1.0");
        assert_eq!((x.epoch(), x.version(), x.release()), (Some("0"), "1.0", None));
        let x = v("a:1.0-1-2");
        assert_eq!((x.epoch(), x.version(), x.release()), (None, "a:1.0-1", Some("2")));
        let x = v("1-2:3");
        assert_eq!((x.epoch(), x.version(), x.release()), (None, "1", Some("2:3")));
        let x = v("1:");
        assert_eq!((x.epoch(), x.version(), x.release()), (Some("1"), "", None));
        assert_eq!(x.to_string(), "1:");
    }

    #[test]
    fn rejects_only_unrepresentable_input() {
        assert_eq!(RpmVersion::parse("").unwrap_err().reason(), "version string is empty");
        assert_eq!(RpmVersion::parse("1\0").unwrap_err().reason(), "version string contains a NUL byte");
    }

    #[test]
    fn evr_rules() {
        assert_eq!(v("0:1.0-1"), v("1.0-1"));
        assert!(v("2:1.0-1") > v("2.0-1"));
        assert!(v("1:4.16-5") > v("4.4-1"));
        assert!(v("1.0") < v("4:1.0"));
        assert!(v("1.0") < v("1.0-1"));
        assert!(v("1.5-1") < v("3:2.0-1"));
        assert!(v("99999999999999999999999:1") > v("9999999999999999999999:2"));
    }

    #[test]
    fn raw_rpmvercmp_edges() {
        assert_eq!(rpmvercmp("", ""), Ordering::Equal);
        assert_eq!(rpmvercmp("", "0"), Ordering::Less);
        assert_eq!(rpmvercmp("+", "_"), Ordering::Equal);
        assert_eq!(rpmvercmp("1.0~", "1.0"), Ordering::Less);
        assert_eq!(rpmvercmp("1.0^", "1.0"), Ordering::Greater);
        assert_eq!(rpmvercmp("1.0^", "1.0.1"), Ordering::Less);
        assert_eq!(rpmvercmp("1a", "1.1"), Ordering::Less);
        assert_eq!(rpmvercmp("1.1.α", "1.1.β"), Ordering::Equal);
        assert_eq!(rpmvercmp("1\0zzz", "1"), Ordering::Equal);
    }
}
