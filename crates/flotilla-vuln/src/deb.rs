//! dpkg version parsing and ordering (Debian, Ubuntu).
//!
//! A port of dpkg's `parseversion()` (`lib/dpkg/parsehelp.c`) and
//! `dpkg_version_compare()`/`verrevcmp()` (`lib/dpkg/version.c`).
//!
//! Format: `[EPOCH:]UPSTREAM[-REVISION]`.
//!
//! * Leading and trailing blanks (space, tab) are trimmed, as dpkg does.
//! * The epoch is everything before the **first** `:`; it must be a decimal
//!   number no larger than `i32::MAX` (dpkg stores it in an `int`). A missing
//!   epoch is 0.
//! * The revision is everything after the **last** `-`; it must not be empty
//!   when the `-` is present. A missing revision compares equal to `0`, so
//!   `1.0` and `1.0-0` are the same version.
//! * Comparison: epoch numerically, then upstream, then revision, each
//!   string with `verrevcmp`: alternating non-digit and digit runs; in
//!   non-digit runs `~` sorts before everything (even the end of the
//!   string), then the end, then letters, then all other characters (by byte
//!   value); digit runs compare numerically, of any length.
//!
//! Strictness: `dpkg --compare-versions` aborts on an empty string (it
//! treats the literal empty argument as "no version"), embedded blanks, a
//! bad epoch, a trailing `:` or `-`, and an empty upstream; it only *warns*
//! when the upstream version does not start with a digit or when either part
//! contains a character outside dpkg's allowed set, then compares anyway.
//! This crate rejects both groups: a warning from dpkg means the string is
//! not a policy-conforming version and its order would be a guess. That is
//! also what the Perl `Dpkg::Version::version_check` (and so
//! `Dpkg_Version.t`) treats as invalid. The epoch must consist of ASCII
//! digits only; C dpkg's `strtol` would also accept a leading `+` (and
//! `-0`), which `Dpkg::Version` rejects and so does this crate.

use std::cmp::Ordering;
use std::fmt;

use crate::VersionError;
use crate::digits::{advance, cmp_digit_runs, split_while};

/// dpkg keeps the epoch in an `int` and rejects anything above `INT_MAX`.
const MAX_EPOCH: u32 = i32::MAX as u32;

/// A parsed, valid dpkg version.
///
/// `Eq` and `Ord` follow dpkg, so `"1.0"`, `"0:1.0"`, `"1.0-0"` and
/// `"1.00"` are all equal even though [`Display`](fmt::Display) prints each
/// one as written.
#[derive(Debug, Clone)]
pub struct DebVersion {
    /// The input with surrounding blanks trimmed.
    text: String,
    epoch: u32,
    upstream: String,
    revision: Option<String>,
}

impl DebVersion {
    /// Parses a dpkg version string.
    ///
    /// Rejects, with a [`VersionError::InvalidDeb`]: an empty or blank
    /// string; blanks inside the version; an empty, non-numeric or too large
    /// epoch; nothing after the epoch's `:`; an empty upstream version or
    /// revision; an upstream version that does not start with a digit; any
    /// character other than ASCII letters, digits and `.+~` (plus `-` and
    /// `:` in the upstream version).
    pub fn parse(s: &str) -> Result<Self, VersionError> {
        let err = |reason| VersionError::InvalidDeb { version: s.to_owned(), reason };
        let text = s.trim_matches(is_blank);
        if text.is_empty() {
            return Err(err("version string is empty"));
        }
        if text.contains(is_blank) {
            return Err(err("version string has embedded spaces"));
        }

        let (epoch, rest) = match text.split_once(':') {
            None => (0, text),
            Some((epoch, rest)) => {
                let epoch = parse_epoch(epoch).map_err(err)?;
                if rest.is_empty() {
                    return Err(err("nothing after colon in version number"));
                }
                (epoch, rest)
            }
        };

        let (upstream, revision) = match rest.rsplit_once('-') {
            None => (rest, None),
            Some((_, "")) => return Err(err("revision number is empty")),
            Some((upstream, revision)) => (upstream, Some(revision)),
        };

        if upstream.is_empty() {
            return Err(err("version number is empty"));
        }
        if !upstream.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(err("version number does not start with digit"));
        }
        if !upstream.bytes().all(|c| is_common_char(c) || c == b'-' || c == b':') {
            return Err(err("invalid character in version number"));
        }
        if !revision.unwrap_or_default().bytes().all(is_common_char) {
            return Err(err("invalid character in revision number"));
        }

        Ok(DebVersion {
            text: text.to_owned(),
            epoch,
            upstream: upstream.to_owned(),
            revision: revision.map(str::to_owned),
        })
    }

    /// The epoch (0 when the version has none).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream version: between the epoch's `:` and the last `-`.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The Debian revision after the last `-`, if there is one.
    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }
}

/// dpkg's `c_isblank`: only space and tab count, not newlines.
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Characters dpkg allows in both the upstream version and the revision.
fn is_common_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'+' | b'~')
}

fn parse_epoch(epoch: &str) -> Result<u32, &'static str> {
    if epoch.is_empty() {
        return Err("epoch in version is empty");
    }
    if !epoch.bytes().all(|c| c.is_ascii_digit()) {
        return Err("epoch in version is not number");
    }
    // Leading zeros are legal (strtol reads "007" as 7) and must not count
    // towards the size check, or a long zero run would look too big.
    let significant = crate::digits::strip_leading_zeros(epoch.as_bytes());
    significant
        .iter()
        .try_fold(0u32, |acc, &d| acc.checked_mul(10)?.checked_add(u32::from(d - b'0')).filter(|&v| v <= MAX_EPOCH))
        .ok_or("epoch in version is too big")
}

/// Sort weight of one byte inside a non-digit run; `None` is the string end.
///
/// Digits never reach this in a way that matters: they only meet the end of
/// the other string here, and both weigh 0, which ends the run.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`, on arbitrary bytes.
fn verrevcmp(mut a: &[u8], mut b: &[u8]) -> Ordering {
    let is_digit = |c: u8| c.is_ascii_digit();
    while !a.is_empty() || !b.is_empty() {
        loop {
            let (ca, cb) = (a.first().copied(), b.first().copied());
            let a_text = ca.is_some_and(|c| !is_digit(c));
            let b_text = cb.is_some_and(|c| !is_digit(c));
            if !(a_text || b_text) {
                break;
            }
            let (wa, wb) = (order(ca), order(cb));
            if wa != wb {
                return wa.cmp(&wb);
            }
            // Equal weights here mean the same byte on both sides, so
            // neither side is at its end and both advance.
            a = advance(a, 1);
            b = advance(b, 1);
        }
        let (da, rest_a) = split_while(a, is_digit);
        let (db, rest_b) = split_while(b, is_digit);
        match cmp_digit_runs(da, db) {
            Ordering::Equal => {}
            other => return other,
        }
        a = rest_a;
        b = rest_b;
    }
    Ordering::Equal
}

impl Ord for DebVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(self.upstream.as_bytes(), other.upstream.as_bytes()))
            .then_with(|| {
                verrevcmp(
                    self.revision.as_deref().unwrap_or_default().as_bytes(),
                    other.revision.as_deref().unwrap_or_default().as_bytes(),
                )
            })
    }
}

impl PartialOrd for DebVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for DebVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for DebVersion {}

impl fmt::Display for DebVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for DebVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> DebVersion {
        DebVersion::parse(s).unwrap()
    }

    #[test]
    fn splits_epoch_upstream_revision() {
        let x = v("0:0-0-0");
        assert_eq!((x.epoch(), x.upstream(), x.revision()), (0, "0-0", Some("0")));
        let x = v("0:0:0-0");
        assert_eq!((x.epoch(), x.upstream(), x.revision()), (0, "0:0", Some("0")));
        let x = v("  1.2  ");
        assert_eq!((x.epoch(), x.upstream(), x.revision()), (0, "1.2", None));
        assert_eq!(x.to_string(), "1.2");
        assert_eq!(v("007:1").epoch(), 7);
        assert_eq!(v("2147483647:1").epoch(), 2147483647);
        assert_eq!(v(&format!("{}1:1", "0".repeat(40))).epoch(), 1);
    }

    #[test]
    fn rejections_follow_dpkg() {
        for (s, reason) in [
            ("", "version string is empty"),
            (" \t ", "version string is empty"),
            ("0:0 0-1", "version string has embedded spaces"),
            (":1.0", "epoch in version is empty"),
            ("a:0-0", "epoch in version is not number"),
            ("-1:0-1", "epoch in version is not number"),
            ("+1:0-1", "epoch in version is not number"),
            ("999999999999999999999999:0-1", "epoch in version is too big"),
            ("2147483648:1", "epoch in version is too big"),
            ("0:", "nothing after colon in version number"),
            ("1.0-", "revision number is empty"),
            ("-1", "version number is empty"),
            ("1:-1", "version number is empty"),
            ("foo5.2", "version number does not start with digit"),
            ("0:foo5.2", "version number does not start with digit"),
            ("5.2@3-2", "invalid character in version number"),
            ("1.0\n", "invalid character in version number"),
            ("1.0-a_b", "invalid character in revision number"),
            ("1:1.0-a:b", "invalid character in revision number"),
        ] {
            let err = DebVersion::parse(s).unwrap_err();
            assert_eq!(err.reason(), reason, "{s:?}");
            assert_eq!(err.version(), s);
        }
    }

    #[test]
    fn missing_parts_default_like_dpkg() {
        assert_eq!(v("1.0"), v("1.0-0"));
        assert_eq!(v("1.0"), v("0:1.0-00"));
        assert!(v("1.0") < v("1.0-0+b1"));
        assert!(v("1.0") > v("1.0-0~"));
    }

    #[test]
    fn tilde_and_letters() {
        assert!(v("1.0~rc1") < v("1.0"));
        assert!(v("1.0~~") < v("1.0~"));
        assert!(v("1.0a") < v("1.0+"));
        assert!(v("1.0") < v("1.0a"));
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let a = format!("1.{}", "9".repeat(100));
        let b = format!("1.1{}", "0".repeat(100));
        assert!(v(&a) < v(&b));
        assert_eq!(verrevcmp(b"1.0000000000000000000000000001", b"1.1"), Ordering::Equal);
    }
}
