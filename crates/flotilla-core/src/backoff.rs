//! Reconnect backoff: exponential with jitter, so a fleet that lost its server does not
//! return in lockstep.
//!
//! Invariant: the first retry comes within `base` (about a second), no delay exceeds `cap`
//! (about a minute), and each delay is spread over the upper half of its window.

use std::time::Duration;

/// Exponential backoff state for one connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap, attempt: 0 }
    }

    /// The delay before the next attempt. `unit` is a random number in [0, 1) supplied by the
    /// caller; the delay is uniform over [window/2, window] where window doubles each attempt.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(30));
        let window = self.base.saturating_mul(factor).min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.5 };
        window.mul_f64(0.5 + unit / 2.0)
    }

    /// Called once a connection has proven healthy.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grows_then_caps() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<u64> = (0..10).map(|_| b.next_delay(1.0).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(500));
    }

    proptest! {
        #[test]
        fn always_within_bounds(units in proptest::collection::vec(any::<f64>(), 1..100)) {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
            for (i, u) in units.into_iter().enumerate() {
                let d = b.next_delay(u);
                prop_assert!(d <= Duration::from_secs(60));
                if i == 0 { prop_assert!(d <= Duration::from_secs(1)); }
                prop_assert!(d >= Duration::from_millis(500));
            }
        }
    }
}
