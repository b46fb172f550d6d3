//! Notifications' vocabulary and rules: subscription kinds, delivery statuses, when a failed
//! delivery is tried again, and how a webhook signature is formed.
//!
//! Invariants: a delivery is tried at most `attempts` times, each wait drawn from an
//! exponential window with jitter and never above the cap; the signed text is exactly
//! `UNIX_SECONDS + "." + body` (../shared/CLI.md, "Notifications"). Pure: time and randomness
//! are arguments; the HMAC itself is computed by the caller's crypto library.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::backoff::Backoff;

/// What a subscription delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubscriptionKind {
    Webhook,
    Email,
    RunDocument,
}

impl SubscriptionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionKind::Webhook => "webhook",
            SubscriptionKind::Email => "email",
            SubscriptionKind::RunDocument => "run-document",
        }
    }
}

/// A name that is not a known value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

impl FromStr for SubscriptionKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [SubscriptionKind::Webhook, SubscriptionKind::Email, SubscriptionKind::RunDocument]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownName { what: "subscription kind", value: s.to_owned() })
    }
}

impl fmt::Display for SubscriptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one (event, subscription) delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryStatus {
    /// Not tried yet.
    Pending,
    /// Tried and failed; tried again at its next attempt time.
    Retrying,
    Delivered,
    /// Every attempt failed; kept with the last error until redriven.
    DeadLettered,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] =
        [DeliveryStatus::Pending, DeliveryStatus::Retrying, DeliveryStatus::Delivered, DeliveryStatus::DeadLettered];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "Pending",
            DeliveryStatus::Retrying => "Retrying",
            DeliveryStatus::Delivered => "Delivered",
            DeliveryStatus::DeadLettered => "DeadLettered",
        }
    }

    /// Still to be sent.
    pub fn is_open(self) -> bool {
        matches!(self, DeliveryStatus::Pending | DeliveryStatus::Retrying)
    }
}

impl FromStr for DeliveryStatus {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeliveryStatus::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownName { what: "delivery status", value: s.to_owned() })
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How failed deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (the first included) before a delivery is dead-lettered; at least 1.
    pub attempts: u32,
    /// The first retry's window.
    pub base: Duration,
    /// No wait is longer.
    pub cap: Duration,
}

impl RetryPolicy {
    /// After `attempts_made` failed attempts: `None` when the delivery is dead-lettered,
    /// otherwise how long to wait. `unit` is a random number in [0, 1).
    pub fn after_failure(&self, attempts_made: u32, unit: f64) -> Option<Duration> {
        if attempts_made >= self.attempts.max(1) {
            return None;
        }
        let mut backoff = Backoff::new(self.base, self.cap);
        for _ in 1..attempts_made {
            backoff.next_delay(0.0);
        }
        Some(backoff.next_delay(unit))
    }
}

/// The text a webhook signature covers: `UNIX_SECONDS.BODY`.
pub fn signed_payload(unix_seconds: i64, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{unix_seconds}.").into_bytes();
    out.extend_from_slice(body);
    out
}

/// The `Flotilla-Signature` header value for a lowercase-hex MAC.
pub fn signature_header(unix_seconds: i64, mac: &[u8]) -> String {
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix_seconds},v1={hex}")
}

/// Which Run Command status changes `flotilla run --notify` sends, as SendCommand's
/// NotificationConfig names them. Both the command's and each invocation's changes count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotifyOn {
    All,
    InProgress,
    Success,
    TimedOut,
    Cancelled,
    /// Failed, and the two other ways an invocation ends without a result of its own
    /// (Undeliverable, Terminated): an operator asking for failures wants those too.
    Failed,
}

/// A `--notify-on` value that is not one of [`NotifyOn::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown --notify-on value `{0}`: use All, InProgress, Success, TimedOut, Cancelled or Failed (comma-separated)"
)]
pub struct UnknownNotifyOn(pub String);

impl NotifyOn {
    pub const ALL: [NotifyOn; 6] = [
        NotifyOn::All,
        NotifyOn::InProgress,
        NotifyOn::Success,
        NotifyOn::TimedOut,
        NotifyOn::Cancelled,
        NotifyOn::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyOn::All => "All",
            NotifyOn::InProgress => "InProgress",
            NotifyOn::Success => "Success",
            NotifyOn::TimedOut => "TimedOut",
            NotifyOn::Cancelled => "Cancelled",
            NotifyOn::Failed => "Failed",
        }
    }

    /// Whether a command or invocation now in `status` (its `as_str` name) is sent.
    pub fn covers(self, status: &str) -> bool {
        match self {
            NotifyOn::All => true,
            NotifyOn::Failed => matches!(status, "Failed" | "Undeliverable" | "Terminated"),
            other => other.as_str() == status,
        }
    }

    /// Whether any of `list` covers `status`.
    pub fn any_covers(list: &[NotifyOn], status: &str) -> bool {
        list.iter().any(|n| n.covers(status))
    }
}

impl FromStr for NotifyOn {
    type Err = UnknownNotifyOn;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NotifyOn::ALL.into_iter().find(|n| n.as_str() == s.trim()).ok_or_else(|| UnknownNotifyOn(s.to_owned()))
    }
}

/// The fewest bytes a webhook secret may have.
pub const MIN_SECRET_BYTES: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_round_trip() {
        for s in DeliveryStatus::ALL {
            assert_eq!(s.as_str().parse::<DeliveryStatus>(), Ok(s));
        }
        for k in ["webhook", "email", "run-document"] {
            assert_eq!(k.parse::<SubscriptionKind>().map(|k| k.as_str()), Ok(k));
        }
        assert!("Webhook".parse::<SubscriptionKind>().is_err());
        assert!("delivered".parse::<DeliveryStatus>().is_err());
    }

    #[test]
    fn notify_on_names_and_coverage() {
        for n in NotifyOn::ALL {
            assert_eq!(n.as_str().parse::<NotifyOn>(), Ok(n));
        }
        let err = "Succeeded".parse::<NotifyOn>().expect_err("unknown");
        assert!(err.to_string().contains("All, InProgress, Success, TimedOut, Cancelled or Failed"), "{err}");
        assert!(NotifyOn::Failed.covers("Undeliverable") && NotifyOn::Failed.covers("Terminated"));
        assert!(!NotifyOn::Success.covers("Failed") && !NotifyOn::InProgress.covers("Pending"));
        assert!(NotifyOn::All.covers("Pending") && NotifyOn::All.covers("Cancelling"));
        assert!(NotifyOn::any_covers(&[NotifyOn::Success, NotifyOn::Failed], "TimedOut").eq(&false));
    }

    #[test]
    fn retries_grow_cap_and_end() {
        let p = RetryPolicy { attempts: 5, base: Duration::from_secs(1), cap: Duration::from_secs(5) };
        let waits: Vec<Option<u64>> = (1..=6).map(|n| p.after_failure(n, 1.0).map(|d| d.as_secs())).collect();
        assert_eq!(waits, [Some(1), Some(2), Some(4), Some(5), None, None]);
        let one = RetryPolicy { attempts: 1, ..p };
        assert_eq!(one.after_failure(1, 0.5), None);
    }

    #[test]
    fn signature_format() {
        assert_eq!(signed_payload(1700000000, b"{}"), b"1700000000.{}");
        assert_eq!(signature_header(5, &[0x0a, 0xff]), "t=5,v1=0aff");
    }

    proptest! {
        #[test]
        fn waits_stay_under_the_cap(n in 1u32..40, unit in 0.0f64..1.0, cap_ms in 1u64..100_000) {
            let p = RetryPolicy { attempts: 50, base: Duration::from_millis(100), cap: Duration::from_millis(cap_ms) };
            let wait = p.after_failure(n, unit).expect("below the attempts");
            prop_assert!(wait <= Duration::from_millis(cap_ms));
        }
    }
}
