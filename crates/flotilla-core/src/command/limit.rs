//! Rate-control limits of a command: `MaxConcurrency` and `MaxErrors`, each written `N` or `N%`
//! (spec §4.1, §4.2).
//!
//! Invariants:
//! - a [`Percent`] is always 1..=100;
//! - a [`MaxConcurrency`] is never zero, so it resolves to at least 1 for a non-empty target set;
//!   a [`MaxErrors`] may be zero ("stop after the first error");
//! - parsing is strict (no spaces, signs, fractions or leading zeros), so what the operator typed
//!   is exactly what is stored and shown back: `parse(x.to_string()) == x`. The one exception is
//!   `0%`, which AWS accepts for `MaxErrors`; it means the same as `0` and is stored as `0`.
//!
//! Rounding: a percentage resolves to `ceil(total × p / 100)`, for both limits. Rounding up never
//! turns a non-zero percentage into zero: `1%` of 10 nodes is 1, so a concurrency limit always
//! makes progress and an error budget the operator opened ("tolerate 1%") is never silently
//! closed to "stop at the first error". The cost is at most one invocation more than the exact
//! fraction (10% of 15 tolerates 2 errors, not 1.5). Exact multiples are unaffected: 10% of 50
//! is 5, so the command stops at the 6th error as AWS documents.

use std::fmt;
use std::str::FromStr;

/// A percentage of the resolved target set, 1..=100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Percent(u8);

impl Percent {
    /// `None` unless `value` is 1..=100.
    pub const fn new(value: u8) -> Option<Self> {
        if value >= 1 && value <= 100 { Some(Percent(value)) } else { None }
    }

    pub const fn get(self) -> u8 {
        self.0
    }
}

/// A limit as the operator wrote it: an absolute count or a share of the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Count(u32),
    Percent(Percent),
}

impl Limit {
    /// The limit as a number of invocations for a command with `total` targets, rounding a
    /// percentage up (see the module doc for why).
    pub fn resolve(self, total: u32) -> u32 {
        match self {
            Limit::Count(n) => n,
            Limit::Percent(p) => {
                let scaled = u64::from(total) * u64::from(p.get());
                // At most `total` because p <= 100, so the conversion cannot fail.
                u32::try_from(scaled.div_ceil(100)).unwrap_or(total)
            }
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Count(n) => write!(f, "{n}"),
            Limit::Percent(p) => write!(f, "{}%", p.get()),
        }
    }
}

/// Why a limit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "invalid {field} `{input}`: {reason}; write a whole number such as 10 or a percentage of the targets from 1% to 100%"
    )]
    Invalid { field: &'static str, input: String, reason: &'static str },
    #[error("max concurrency `{input}` would never run anything: use at least 1 or 1%")]
    ZeroConcurrency { input: String },
}

/// The shared `N` / `N%` syntax. Accepts `0` and `0%` (as `Count(0)`); callers that must refuse
/// zero do so themselves with a message naming their field.
fn parse(input: &str, field: &'static str) -> Result<Limit, LimitError> {
    let invalid = |reason: &'static str| LimitError::Invalid { field, input: input.to_owned(), reason };
    if input.is_empty() {
        return Err(invalid("it is empty"));
    }
    if input.chars().any(char::is_whitespace) {
        return Err(invalid("it contains spaces"));
    }
    let (digits, is_percent) = match input.strip_suffix('%') {
        Some(digits) => (digits, true),
        None => (input, false),
    };
    if digits.starts_with('-') {
        return Err(invalid("it is negative"));
    }
    if digits.starts_with('+') {
        return Err(invalid("it has a sign"));
    }
    if digits.contains(['.', ',']) {
        return Err(invalid("it is not a whole number"));
    }
    if digits.is_empty() {
        return Err(invalid("the number is missing"));
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("it is not a number"));
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(invalid("it has a leading zero"));
    }
    if is_percent {
        // Anything too long for a u8 is also above 100.
        let value = digits.parse::<u8>().map_err(|_| invalid("a percentage is at most 100%"))?;
        if value == 0 {
            return Ok(Limit::Count(0));
        }
        return Percent::new(value).map(Limit::Percent).ok_or_else(|| invalid("a percentage is at most 100%"));
    }
    digits.parse::<u32>().map(Limit::Count).map_err(|_| invalid("it is larger than 4294967295"))
}

impl FromStr for Limit {
    type Err = LimitError;

    /// The syntax shared by both limits, zero allowed. Prefer [`MaxConcurrency`] and
    /// [`MaxErrors`], which also apply their field's rule for zero.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s, "limit")
    }
}

/// How many invocations may be in flight at once. Never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaxConcurrency(Limit);

impl MaxConcurrency {
    /// Run Command's default when the operator sets nothing (spec §4.2.6).
    pub const DEFAULT: MaxConcurrency = MaxConcurrency(Limit::Count(50));

    /// Refuses a zero count: a command that may never run anything would hang until it timed out.
    pub fn new(limit: Limit) -> Result<Self, LimitError> {
        match limit {
            Limit::Count(0) => Err(LimitError::ZeroConcurrency { input: limit.to_string() }),
            _ => Ok(MaxConcurrency(limit)),
        }
    }

    pub fn limit(self) -> Limit {
        self.0
    }

    /// At least 1 whenever `total > 0`: counts are non-zero and a percentage rounds up.
    pub fn resolve(self, total: u32) -> u32 {
        self.0.resolve(total)
    }
}

impl Default for MaxConcurrency {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for MaxConcurrency {
    type Err = LimitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse(s, "max concurrency")? {
            Limit::Count(0) => Err(LimitError::ZeroConcurrency { input: s.to_owned() }),
            limit => Ok(MaxConcurrency(limit)),
        }
    }
}

impl fmt::Display for MaxConcurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How many errors (Failed or TimedOut invocations) a command tolerates; the next one stops
/// dispatch. Zero is valid: stop at the first error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaxErrors(Limit);

impl MaxErrors {
    /// Run Command's default when the operator sets nothing (spec §4.2.6).
    pub const DEFAULT: MaxErrors = MaxErrors(Limit::Count(0));

    pub const fn new(limit: Limit) -> Self {
        MaxErrors(limit)
    }

    pub fn limit(self) -> Limit {
        self.0
    }

    /// The number of errors tolerated; dispatch stops when one more arrives.
    pub fn resolve(self, total: u32) -> u32 {
        self.0.resolve(total)
    }
}

impl Default for MaxErrors {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl From<Limit> for MaxErrors {
    fn from(limit: Limit) -> Self {
        MaxErrors(limit)
    }
}

impl FromStr for MaxErrors {
    type Err = LimitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s, "max errors").map(MaxErrors)
    }
}

impl fmt::Display for MaxErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pct(p: u8) -> Limit {
        Limit::Percent(Percent::new(p).expect("valid percent"))
    }

    #[test]
    fn percent_range() {
        let table = [(0, false), (1, true), (50, true), (100, true), (101, false), (255, false)];
        for (value, valid) in table {
            assert_eq!(Percent::new(value).is_some(), valid, "{value}");
        }
    }

    #[test]
    fn parse_valid_table() {
        // (input, as max concurrency, as max errors, canonical display)
        let table: [(&str, Option<Limit>, Limit, &str); 9] = [
            ("1", Some(Limit::Count(1)), Limit::Count(1), "1"),
            ("50", Some(Limit::Count(50)), Limit::Count(50), "50"),
            ("4294967295", Some(Limit::Count(u32::MAX)), Limit::Count(u32::MAX), "4294967295"),
            ("1%", Some(pct(1)), pct(1), "1%"),
            ("10%", Some(pct(10)), pct(10), "10%"),
            ("100%", Some(pct(100)), pct(100), "100%"),
            ("0", None, Limit::Count(0), "0"),
            // AWS's MaxErrors pattern admits 0%; it is the same budget as 0.
            ("0%", None, Limit::Count(0), "0"),
            ("7", Some(Limit::Count(7)), Limit::Count(7), "7"),
        ];
        for (input, concurrency, errors, display) in table {
            let got_errors: MaxErrors = input.parse().expect(input);
            assert_eq!(got_errors.limit(), errors, "max errors {input}");
            assert_eq!(got_errors.to_string(), display, "max errors display {input}");
            assert_eq!(input.parse::<Limit>().expect(input), errors, "limit {input}");
            match concurrency {
                Some(want) => {
                    let got: MaxConcurrency = input.parse().expect(input);
                    assert_eq!(got.limit(), want, "max concurrency {input}");
                    assert_eq!(got.to_string(), display, "max concurrency display {input}");
                }
                None => {
                    let err = input.parse::<MaxConcurrency>().expect_err(input);
                    assert_eq!(err, LimitError::ZeroConcurrency { input: input.to_owned() });
                    assert!(err.to_string().contains("at least 1"), "{err}");
                }
            }
        }
    }

    #[test]
    fn parse_invalid_table() {
        // Refused by both fields, with the reason the message must give.
        let table = [
            ("", "it is empty"),
            (" 5", "it contains spaces"),
            ("5 ", "it contains spaces"),
            ("5 %", "it contains spaces"),
            ("-1", "it is negative"),
            ("-5%", "it is negative"),
            ("+5", "it has a sign"),
            ("5.5", "it is not a whole number"),
            ("5.5%", "it is not a whole number"),
            ("1,000", "it is not a whole number"),
            ("%", "the number is missing"),
            ("abc", "it is not a number"),
            ("ten%", "it is not a number"),
            ("5%%", "it is not a number"),
            ("1e3", "it is not a number"),
            ("0x10", "it is not a number"),
            ("five", "it is not a number"),
            ("05", "it has a leading zero"),
            ("00", "it has a leading zero"),
            ("010%", "it has a leading zero"),
            ("101%", "a percentage is at most 100%"),
            ("256%", "a percentage is at most 100%"),
            ("99999%", "a percentage is at most 100%"),
            ("4294967296", "it is larger than 4294967295"),
        ];
        for (input, reason) in table {
            let want = |field| LimitError::Invalid { field, input: input.to_owned(), reason };
            assert_eq!(input.parse::<MaxConcurrency>(), Err(want("max concurrency")), "{input:?}");
            assert_eq!(input.parse::<MaxErrors>(), Err(want("max errors")), "{input:?}");
            let message = want("max errors").to_string();
            assert!(message.contains(reason) && message.contains("write a whole number"), "{message}");
        }
    }

    #[test]
    fn defaults_are_run_command_defaults() {
        assert_eq!(MaxConcurrency::default().limit(), Limit::Count(50));
        assert_eq!(MaxErrors::default().limit(), Limit::Count(0));
    }

    #[test]
    fn constructors_apply_the_zero_rule() {
        assert!(MaxConcurrency::new(Limit::Count(0)).is_err());
        assert_eq!(MaxConcurrency::new(Limit::Count(3)).map(MaxConcurrency::limit), Ok(Limit::Count(3)));
        assert_eq!(MaxErrors::new(Limit::Count(0)).limit(), Limit::Count(0));
        assert_eq!(MaxErrors::from(pct(5)).limit(), pct(5));
    }

    #[test]
    fn resolve_table() {
        let table = [
            (Limit::Count(5), 50, 5),
            (Limit::Count(50), 10, 50), // a count is not clipped to the targets; the planner is.
            (Limit::Count(0), 10, 0),
            (pct(10), 50, 5), // the spec's example: stop at the 6th error.
            (pct(1), 10, 1),  // rounds up, never to zero
            (pct(10), 15, 2),
            (pct(33), 100, 33),
            (pct(34), 100, 34),
            (pct(50), 3, 2),
            (pct(100), 7, 7),
            (pct(1), 1, 1),
            (pct(50), 0, 0),
            (pct(100), u32::MAX, u32::MAX),
            (pct(1), u32::MAX, 42_949_673),
        ];
        for (limit, total, want) in table {
            assert_eq!(limit.resolve(total), want, "{limit} of {total}");
        }
    }

    fn any_limit() -> impl Strategy<Value = Limit> {
        prop_oneof![any::<u32>().prop_map(Limit::Count), (1u8..=100).prop_map(pct)]
    }

    proptest! {
        #[test]
        fn display_round_trips(limit in any_limit()) {
            prop_assert_eq!(limit.to_string().parse::<Limit>(), Ok(limit));
            prop_assert_eq!(limit.to_string().parse::<MaxErrors>().map(MaxErrors::limit), Ok(limit));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(input in ".{0,12}") {
            let _ = input.parse::<MaxConcurrency>();
            let _ = input.parse::<MaxErrors>();
        }

        #[test]
        fn percent_resolves_to_the_ceiling(p in 1u8..=100, total in any::<u32>()) {
            let got = u64::from(pct(p).resolve(total));
            let exact_times_100 = u64::from(total) * u64::from(p);
            prop_assert!(got * 100 >= exact_times_100, "never below the exact share");
            prop_assert!(got == 0 || (got - 1) * 100 < exact_times_100, "less than one above it");
            prop_assert!(got <= u64::from(total));
            if total > 0 {
                prop_assert!(got >= 1);
            }
        }

        #[test]
        fn concurrency_is_at_least_one_for_any_targets(limit in any_limit(), total in 1u32..) {
            if let Ok(max) = MaxConcurrency::new(limit) {
                prop_assert!(max.resolve(total) >= 1);
            }
        }
    }
}
