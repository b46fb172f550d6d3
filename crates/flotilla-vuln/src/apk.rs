//! apk version parsing and ordering (Alpine Linux), apk-tools 2.x rules.
//!
//! A port of the apk-tools 2.x `src/version.c` tokenizer
//! (`next_token`/`get_token`), `apk_version_validate` and
//! `apk_version_compare_blob`, with one adjustment (a suffix after a zero
//! component, see below) so that the 2.14-stable branch's own test data
//! passes. The 2.14-stable source itself was not available to port, so that
//! adjustment is inferred from its tests.
//!
//! apk-tools 3.x changed several rules (letters followed by digits such as
//! `5.7.1p1` became invalid, leading zeros sort as strings, `~hash`
//! components); Alpine's security data and 2.x hosts use versions such as
//! `6.0.2p1-r3`, so the 2.x rules are the reference here.
//!
//! Grammar (Gentoo style): `DIGITS{.DIGITS}[letter]{_suffix[DIGITS]}[-rDIGITS]`
//! where the suffixes are `alpha`, `beta`, `pre`, `rc` (older than no
//! suffix, in that order) and `cvs`, `svn`, `git`, `hg`, `p` (newer than no
//! suffix, in that order). Versions are compared token by token:
//!
//! * numbers numerically, any length; but a dot-separated component with a
//!   leading zero weighs minus its number of leading zeros and the rest is a
//!   new number (so `1.01 < 1.1` and `1.0 > 1.001`), as in apk-tools 2.x;
//!   a suffix right after such a component still counts as a suffix
//!   (`6.0_pre1 < 6.0`), which apk-tools 2.14's tests require but the
//!   older 2.x tokenizer got wrong (see `Tokenizer::get_token`);
//! * letters by byte value;
//! * when one version runs out of tokens first, or the token kinds differ,
//!   the kind decides: a pre-release suffix makes a version older, otherwise
//!   the version whose next token comes *earlier* in the grammar is newer
//!   (`1.2.1 > 1.2a > 1.2_p1 > 1.2-r1 > 1.2`).
//!
//! Strictness: [`ApkVersion::parse`] accepts exactly what apk-tools 2.x's
//! `apk_version_validate` accepts (which is lax: `a`, `.1` and `1.r1` are
//! valid), except that it also rejects the empty string and any string with
//! a NUL byte (2.x would treat both as a version with no tokens, or stop at
//! the NUL). `apk version -t` in 2.x compares even invalid strings; that
//! behaviour is available as [`compare_unvalidated`] for reproducing apk's
//! own answers, but it is not a total order on invalid input.

use std::cmp::Ordering;
use std::fmt;

use crate::VersionError;
use crate::digits::{advance, split_while, strip_leading_zeros, until_nul};

/// apk's token kinds; the declaration order is apk's numeric order, which
/// the comparison relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TokenType {
    Invalid,
    DigitOrZero,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    RevisionNo,
    End,
}

/// A token value. apk uses a C `int`; numbers here are exact instead.
///
/// `Small` covers letters, suffix indices, negated leading-zero counts and
/// numbers of up to 18 significant digits; `Big` holds longer digit runs
/// (leading zeros stripped), which always exceed every `Small`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Small(i64),
    Big(&'a [u8]),
}

impl Ord for Value<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Small(a), Value::Small(b)) => a.cmp(b),
            (Value::Small(_), Value::Big(_)) => Ordering::Less,
            (Value::Big(_), Value::Small(_)) => Ordering::Greater,
            (Value::Big(a), Value::Big(b)) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
        }
    }
}

impl PartialOrd for Value<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn number(digits: &[u8]) -> Value<'_> {
    let digits = strip_leading_zeros(digits);
    if digits.len() > 18 {
        return Value::Big(digits);
    }
    let n = digits.iter().fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'));
    Value::Small(n)
}

const PRE_SUFFIXES: [&[u8]; 4] = [b"alpha", b"beta", b"pre", b"rc"];
const POST_SUFFIXES: [&[u8]; 5] = [b"cvs", b"svn", b"git", b"hg", b"p"];

/// apk's tokenizer state: the unread input and the kind of the next token.
#[derive(Debug, Clone)]
struct Tokenizer<'a> {
    rest: &'a [u8],
    kind: TokenType,
    /// Why `kind` became `Invalid`, for error messages.
    invalid: &'static str,
}

impl<'a> Tokenizer<'a> {
    fn new(s: &'a [u8]) -> Self {
        Tokenizer { rest: s, kind: TokenType::Digit, invalid: "" }
    }

    fn set_invalid(&mut self, reason: &'static str) {
        self.kind = TokenType::Invalid;
        self.invalid = reason;
    }

    /// `next_token`: classifies what follows the current token, consuming
    /// separators (`.`, `_`, `-r`) but not letters or digits.
    fn next_token(&mut self) {
        use TokenType::*;
        let mut n = Invalid;
        let mut reason = "";
        match self.rest.first().copied() {
            None | Some(0) => n = End,
            Some(c) if matches!(self.kind, Digit | DigitOrZero) && c.is_ascii_lowercase() => {
                n = Letter;
            }
            Some(c) if self.kind == Letter && c.is_ascii_digit() => n = Digit,
            Some(c) if self.kind == Suffix && c.is_ascii_digit() => n = SuffixNo,
            Some(c) => {
                match c {
                    b'.' => n = DigitOrZero,
                    b'_' => n = Suffix,
                    b'-' if self.rest.get(1) == Some(&b'r') => {
                        n = RevisionNo;
                        self.rest = advance(self.rest, 1);
                    }
                    b'-' => reason = "'-' not followed by 'r'",
                    _ => reason = "unexpected character",
                }
                self.rest = advance(self.rest, 1);
            }
        }
        // Components may only appear in grammar order; these three are the
        // allowed steps back (more dotted numbers, more suffixes, and the
        // digits after a letter).
        if n < self.kind
            && n != Invalid
            && !((n == DigitOrZero && self.kind == Digit)
                || (n == Suffix && self.kind == SuffixNo)
                || (n == Digit && self.kind == Letter))
        {
            n = Invalid;
            reason = "version components out of order";
        }
        if n == Invalid {
            self.set_invalid(reason);
        } else {
            self.kind = n;
        }
    }

    /// `get_token`: reads the token of kind `self.kind` and returns its
    /// value, leaving `self.kind` as the kind of the following token.
    fn get_token(&mut self) -> Value<'a> {
        use TokenType::*;
        if self.rest.is_empty() {
            self.kind = End;
            return Value::Small(0);
        }
        let mut forced_next = None;
        let (value, len) = match self.kind {
            DigitOrZero if self.rest.first() == Some(&b'0') => {
                let zeros = self.rest.iter().take_while(|&&c| c == b'0').count();
                // What follows the zeros is read as a `Digit` token: the
                // rest of the number, or an empty number (0) before a `.`.
                // The older 2.x code did that before anything else too,
                // and against a version ending right after its zeros that
                // empty token hid a suffix from the end-of-version rule
                // (`6.0_pre1 > 6.0`). apk-tools 2.14's test data
                // (version.data lines 730-733) requires `6.0_pre1 < 6.0`,
                // so letters, suffixes and revisions are classified at
                // once; against any other version both ways agree.
                if self.rest.get(zeros).is_some_and(|&c| c.is_ascii_digit() || c == b'.') {
                    forced_next = Some(Digit);
                }
                (Value::Small(-i64::try_from(zeros).unwrap_or(i64::MAX)), zeros)
            }
            DigitOrZero | Digit | SuffixNo | RevisionNo => {
                let (digits, _) = split_while(self.rest, |c| c.is_ascii_digit());
                (number(digits), digits.len())
            }
            Letter => (Value::Small(self.rest.first().copied().map_or(0, i64::from)), 1),
            Suffix => match suffix_value(self.rest) {
                Some(found) => found,
                None => {
                    self.set_invalid("unknown suffix");
                    return Value::Small(-1);
                }
            },
            Invalid | End => {
                self.set_invalid("unexpected token");
                return Value::Small(-1);
            }
        };
        self.rest = advance(self.rest, len);
        if self.rest.is_empty() {
            self.kind = End;
        } else if let Some(kind) = forced_next {
            self.kind = kind;
        } else {
            self.next_token();
        }
        value
    }
}

/// Value and length of the suffix name at the start of `s`: pre-release
/// suffixes weigh -4..-1, post-release ones 0..4. Matching is by prefix,
/// pre-release names first, as in apk (`_pre` is not `_p` + `re`).
fn suffix_value(s: &[u8]) -> Option<(Value<'static>, usize)> {
    let pre = PRE_SUFFIXES.iter().zip(-4i64..).find(|(name, _)| s.starts_with(name));
    let post = || POST_SUFFIXES.iter().zip(0i64..).find(|(name, _)| s.starts_with(name));
    pre.or_else(post).map(|(name, value)| (Value::Small(value), name.len()))
}

/// `apk_version_validate`; on failure returns the tokenizer's reason.
fn validate(s: &[u8]) -> Result<(), &'static str> {
    let mut t = Tokenizer::new(s);
    while t.kind != TokenType::End && t.kind != TokenType::Invalid {
        t.get_token();
    }
    if t.kind == TokenType::End { Ok(()) } else { Err(t.invalid) }
}

/// `apk_version_compare_blob` (non-fuzzy), on arbitrary bytes.
fn compare_bytes(a: &[u8], b: &[u8]) -> Ordering {
    use TokenType::*;
    let mut ta = Tokenizer::new(a);
    let mut tb = Tokenizer::new(b);
    let (mut av, mut bv) = (Value::Small(0), Value::Small(0));
    while ta.kind == tb.kind && ta.kind != End && ta.kind != Invalid && av == bv {
        av = ta.get_token();
        bv = tb.get_token();
    }
    if av != bv {
        return av.cmp(&bv);
    }
    if ta.kind == tb.kind {
        return Ordering::Equal;
    }
    // Equal so far and one side goes on: a pre-release suffix (or an
    // unknown one, which apk also scores as -1) makes that side older.
    if ta.kind == Suffix && ta.clone().get_token() < Value::Small(0) {
        return Ordering::Less;
    }
    if tb.kind == Suffix && tb.clone().get_token() < Value::Small(0) {
        return Ordering::Greater;
    }
    // Otherwise the side whose next token kind is earlier in the grammar is
    // newer; `End` is last, so the longer version wins.
    tb.kind.cmp(&ta.kind)
}

/// Compares two strings exactly like apk-tools 2.x `apk version -t`, which
/// does **not** validate its arguments.
///
/// Use this only to reproduce apk's answers for strings apk itself would
/// reject elsewhere (for instance in reference data). On invalid input the
/// result is apk's "compare the valid prefix" behaviour, which is not
/// guaranteed to be transitive. For anything else use [`ApkVersion`].
/// As in C, a NUL byte ends the string.
pub fn compare_unvalidated(a: &str, b: &str) -> Ordering {
    compare_bytes(until_nul(a.as_bytes()), until_nul(b.as_bytes()))
}

/// A parsed, valid apk-tools 2.x version.
///
/// `Eq` and `Ord` follow apk, so `"1-r1"` and `"1-r01"` are equal even
/// though [`Display`](fmt::Display) prints each one as written.
#[derive(Debug, Clone)]
pub struct ApkVersion {
    text: String,
}

impl ApkVersion {
    /// Parses an apk version, accepting what apk-tools 2.x
    /// `apk_version_validate` accepts.
    ///
    /// Rejects, with a [`VersionError::InvalidApk`]: the empty string,
    /// strings containing a NUL byte, unknown characters (including upper
    /// case letters and whitespace), `-` not followed by `r`, unknown `_`
    /// suffixes, and components out of grammar order (such as `1-r1.2` or
    /// `1_rc1.2`).
    pub fn parse(s: &str) -> Result<Self, VersionError> {
        let err = |reason| VersionError::InvalidApk { version: s.to_owned(), reason };
        if s.is_empty() {
            return Err(err("version string is empty"));
        }
        if s.contains('\0') {
            return Err(err("version string contains a NUL byte"));
        }
        validate(s.as_bytes()).map_err(err)?;
        Ok(ApkVersion { text: s.to_owned() })
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Ord for ApkVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_bytes(self.text.as_bytes(), other.text.as_bytes())
    }
}

impl PartialOrd for ApkVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for ApkVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for ApkVersion {}

impl fmt::Display for ApkVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for ApkVersion {
    type Err = VersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> ApkVersion {
        ApkVersion::parse(s).unwrap()
    }

    #[test]
    fn suffix_order() {
        let order = [
            "1.2_alpha",
            "1.2_beta",
            "1.2_pre",
            "1.2_rc",
            "1.2",
            "1.2-r1",
            "1.2_cvs",
            "1.2_svn",
            "1.2_git",
            "1.2_hg",
            "1.2_p",
            "1.2a",
            "1.2.1",
        ];
        for pair in order.windows(2) {
            if let [a, b] = pair {
                assert!(v(a) < v(b), "{a} < {b}");
            }
        }
    }

    #[test]
    fn leading_zero_rule_of_apk_2() {
        assert!(v("1.01") < v("1.1"));
        assert!(v("8.2.0") > v("8.2.001"));
        assert_eq!(v("1-r1"), v("1-r01"));
        assert_eq!(v("01.2"), v("1.2"));
        assert!(v("1.0.1") < v("1.06-r1"));
        assert!(v("6.0_pre1") < v("6.0"));
        assert!(v("6.0_p1") > v("6.0"));
        assert!(v("6.0_rc1") < v("6.0-r1"));
    }

    #[test]
    fn letter_then_digits_is_valid_in_2x() {
        assert!(v("5.7.1p1-r0") < v("5.7.1p1-r1"));
        assert!(v("6.6.2p1") < v("6.6.2p2"));
    }

    #[test]
    fn rejections_name_a_reason() {
        for (s, reason) in [
            ("", "version string is empty"),
            ("1\0", "version string contains a NUL byte"),
            ("1.2.0A", "unexpected character"),
            (" 1", "unexpected character"),
            ("1-a", "'-' not followed by 'r'"),
            ("1_foo", "unknown suffix"),
            ("1-r1.2", "version components out of order"),
            ("1_rc1.2", "version components out of order"),
        ] {
            let err = ApkVersion::parse(s).unwrap_err();
            assert_eq!(err.reason(), reason, "{s:?}");
        }
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let a = format!("1.{}", "9".repeat(60));
        let b = format!("1.1{}", "0".repeat(60));
        assert!(v(&a) < v(&b));
        assert!(v("1.0.0_pre20191002222144-r0") < v("1.0.0_pre20210530193627-r0"));
    }
}
