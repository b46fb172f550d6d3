//! Whether the advisory database can speak for a node at all, and how fresh it is.
//!
//! A CVE verdict of "no findings" is only true when advisories for the node's own release were
//! there to match against. [`coverage`] decides that from what the database holds per
//! ecosystem key (count and newest record), before any matching:
//!
//! * none of the node's ecosystem keys has a record → [`Coverage::NoAdvisories`]: the node is
//!   not assessable, never clean;
//! * otherwise [`Coverage::Covered`], with [`Staleness`] when the newest record among the
//!   node's keys is older than the operator's maximum age (the node is still assessed, and the
//!   verdict says how old its data was).
//!
//! Invariant: pure; time is an argument.

/// What the database holds for one ecosystem key (as [`crate::OsvEcosystem::key`] names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcosystemHoldings {
    pub key: String,
    pub advisories: u64,
    /// The newest record's OSV `modified`, in microseconds since the Unix epoch.
    pub newest_modified_micros: i64,
}

/// Advisory data older than the configured maximum age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staleness {
    /// Whole days between the newest record of the node's ecosystems and now.
    pub days: u64,
    /// The node's ecosystem keys that hold records.
    pub ecosystems: Vec<String>,
}

/// The database's coverage of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// No record for any of these keys (the node's): nothing can be said about its CVEs.
    NoAdvisories { ecosystems: Vec<String> },
    /// Records exist; `stale` when the newest is older than the maximum age.
    Covered { stale: Option<Staleness> },
}

const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// Decides coverage of a node whose ecosystem keys are `node_keys`, given the database's
/// `holdings`, the time `now_micros` and the maximum age `max_age_micros` of the newest record.
pub fn coverage(
    node_keys: &[String],
    holdings: &[EcosystemHoldings],
    now_micros: i64,
    max_age_micros: i64,
) -> Coverage {
    let held: Vec<&EcosystemHoldings> =
        holdings.iter().filter(|h| h.advisories > 0 && node_keys.contains(&h.key)).collect();
    let Some(newest) = held.iter().map(|h| h.newest_modified_micros).max() else {
        let mut ecosystems = node_keys.to_vec();
        ecosystems.dedup();
        return Coverage::NoAdvisories { ecosystems };
    };
    let age = now_micros.saturating_sub(newest);
    let stale = (age > max_age_micros).then(|| Staleness {
        days: u64::try_from(age / DAY_MICROS).unwrap_or(0),
        ecosystems: held.iter().map(|h| h.key.clone()).collect(),
    });
    Coverage::Covered { stale }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(key: &str, advisories: u64, days_old: i64) -> EcosystemHoldings {
        EcosystemHoldings { key: key.into(), advisories, newest_modified_micros: NOW - days_old * DAY_MICROS }
    }

    const NOW: i64 = 1_800_000_000_000_000;
    const WEEK: i64 = 7 * DAY_MICROS;

    #[test]
    fn decides_from_the_node_keys_only() {
        let keys = |k: &[&str]| k.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let db = [held("Debian:11", 10, 0), held("Ubuntu:Pro:22.04:LTS", 3, 30), held("Alpine:v3.19", 0, 0)];
        let cases: Vec<(Vec<String>, Coverage)> = vec![
            // An empty database, or records only for other releases: never clean.
            (keys(&["Debian:12"]), Coverage::NoAdvisories { ecosystems: keys(&["Debian:12"]) }),
            // A key listed with no records counts as absent.
            (keys(&["Alpine:v3.19"]), Coverage::NoAdvisories { ecosystems: keys(&["Alpine:v3.19"]) }),
            (keys(&["Debian:11"]), Coverage::Covered { stale: None }),
            // One of the node's keys is enough; its age is that key's newest record.
            (
                keys(&["Ubuntu:22.04:LTS", "Ubuntu:Pro:22.04:LTS"]),
                Coverage::Covered { stale: Some(Staleness { days: 30, ecosystems: keys(&["Ubuntu:Pro:22.04:LTS"]) }) },
            ),
        ];
        for (node, want) in cases {
            assert_eq!(coverage(&node, &db, NOW, WEEK), want, "{node:?}");
        }
        assert_eq!(
            coverage(&keys(&["Debian:12"]), &[], NOW, WEEK),
            Coverage::NoAdvisories { ecosystems: keys(&["Debian:12"]) }
        );
    }

    #[test]
    fn staleness_starts_past_the_maximum_age() {
        let keys = vec!["Debian:12".to_owned()];
        let at = |age: i64| coverage(&keys, &[held("Debian:12", 1, 0)], NOW + age, WEEK);
        assert_eq!(at(WEEK), Coverage::Covered { stale: None });
        assert!(matches!(at(WEEK + 1), Coverage::Covered { stale: Some(Staleness { days: 7, .. }) }));
        // A record dated in the future (a skewed clock) is fresh, not negative days old.
        assert_eq!(at(-WEEK), Coverage::Covered { stale: None });
    }
}
