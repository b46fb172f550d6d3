//! Numeric comparison of ASCII digit runs and small byte-slice helpers.
//!
//! Invariant: nothing here converts digits to a fixed-width integer, so a
//! digit run of any length compares correctly and can never overflow. All
//! helpers are total on arbitrary byte slices and cannot panic.

use std::cmp::Ordering;

/// Removes leading `'0'` bytes.
pub(crate) fn strip_leading_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    digits.get(zeros..).unwrap_or_default()
}

/// Compares two runs of ASCII digits by numeric value.
///
/// Once leading zeros are gone, the longer run is the larger number, and
/// runs of equal length order like their digits.
pub(crate) fn cmp_digit_runs(a: &[u8], b: &[u8]) -> Ordering {
    let a = strip_leading_zeros(a);
    let b = strip_leading_zeros(b);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Splits `s` after the longest prefix whose bytes all satisfy `pred`.
pub(crate) fn split_while(s: &[u8], pred: impl Fn(u8) -> bool) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|&&c| pred(c)).count();
    s.split_at_checked(n).unwrap_or((s, &[]))
}

/// The part of `s` before its first NUL byte: what C code sees of a string.
pub(crate) fn until_nul(s: &[u8]) -> &[u8] {
    s.split(|&c| c == 0).next().unwrap_or_default()
}

/// Drops the first `n` bytes of `s` (all of it if `s` is shorter).
pub(crate) fn advance(s: &[u8], n: usize) -> &[u8] {
    s.get(n..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_runs_compare_numerically() {
        let big = "9".repeat(200);
        let bigger = format!("1{}", "0".repeat(200));
        assert_eq!(cmp_digit_runs(big.as_bytes(), bigger.as_bytes()), Ordering::Less);
        assert_eq!(cmp_digit_runs(b"0009", b"9"), Ordering::Equal);
        assert_eq!(cmp_digit_runs(b"", b"000"), Ordering::Equal);
        assert_eq!(cmp_digit_runs(b"10", b"9"), Ordering::Greater);
    }

    #[test]
    fn split_and_advance_are_total() {
        assert_eq!(split_while(b"123ab", |c| c.is_ascii_digit()), (&b"123"[..], &b"ab"[..]));
        assert_eq!(split_while(b"", |_| true), (&b""[..], &b""[..]));
        assert_eq!(advance(b"ab", 5), b"");
    }
}
