//! Severity of an advisory: a CVSS base score from its vector, and the four levels Flotilla
//! reports (Inspector's High / Medium / Low / Informational).
//!
//! Decisions (documented in ARCHITECTURE.md):
//! * **Score**: the highest base score among the record's and the entry's `CVSS_V3` and
//!   `CVSS_V4` vectors, computed by the RustSec `cvss` crate (CVSS 3.0/3.1 base formula;
//!   CVSS 4.0 through the specification's macro-vector lookup, so a base-only v4 vector gives
//!   the CVSS-B score). A vector that does not parse gives no score; it never fails a match.
//! * **Level**: the distribution's own rating wins when there is one, because it is made for
//!   the packages the node runs (Ubuntu rates coreutils' CVE-2016-2781 `low` while its CVSS
//!   says 6.5): Ubuntu priority (`negligible` → Informational, `low`, `medium`, `high`,
//!   `critical` → High), Debian urgency (`unimportant` → Informational, `low`, `medium`,
//!   `high`, with or without Debian's `*`/`**` marks), and the AlmaLinux/Rocky/Red Hat summary
//!   prefix (`Critical:`/`Important:` → High, `Moderate:` → Medium, `Low:` → Low). Otherwise
//!   the CVSS qualitative scale: 0.0 → Informational, 0.1–3.9 Low, 4.0–6.9 Medium, 7.0 and
//!   above High (Critical counts as High).
//! * A record with neither is **Medium**: it is a known, unrated vulnerability (Debian's
//!   DSA/DLA records carry no rating); calling it Informational would hide it, High would cry
//!   wolf.

use std::str::FromStr;

use crate::advisory::SeverityEntry;

/// The four levels, defined in the core so the store can keep them typed.
pub use flotilla_core::Severity;

/// The base score of a CVSS v3.x or v4.0 vector, rounded to one decimal as published.
pub fn cvss_base_score(vector: &str) -> Option<f64> {
    let parsed = cvss::Cvss::from_str(vector.trim()).ok()?;
    let score = parsed.score();
    score.is_finite().then(|| (score * 10.0).round() / 10.0)
}

/// A distribution's own word (Ubuntu priority, Debian urgency) as a level.
pub fn distro_rating(word: &str) -> Option<Severity> {
    match word.trim().trim_end_matches('*').to_ascii_lowercase().as_str() {
        "critical" | "high" | "important" => Some(Severity::High),
        "medium" | "moderate" => Some(Severity::Medium),
        "low" => Some(Severity::Low),
        "negligible" | "unimportant" => Some(Severity::Informational),
        _ => None,
    }
}

/// The level in an AlmaLinux/Rocky/Red Hat summary prefix (`Important: kernel security ...`).
pub fn summary_rating(summary: &str) -> Option<Severity> {
    let (word, _) = summary.split_once(':')?;
    match word.trim() {
        "Critical" | "Important" => Some(Severity::High),
        "Moderate" => Some(Severity::Medium),
        "Low" => Some(Severity::Low),
        _ => None,
    }
}

/// Score and level of an advisory for one matching entry (see the module documentation).
pub fn rate(
    record: &[SeverityEntry],
    summary: &str,
    entry_severity: &[SeverityEntry],
    ubuntu_priority: Option<&str>,
    debian_urgency: Option<&str>,
) -> (Option<f64>, Severity) {
    let entries = || record.iter().chain(entry_severity.iter());
    let score = entries()
        .filter(|s| s.kind.starts_with("CVSS_V3") || s.kind == "CVSS_V4")
        .filter_map(|s| cvss_base_score(&s.score))
        .fold(None, |best: Option<f64>, s| Some(best.map_or(s, |b| b.max(s))));
    let distro = ubuntu_priority
        .and_then(distro_rating)
        .or_else(|| entries().filter(|s| s.kind == "Ubuntu").find_map(|s| distro_rating(&s.score)))
        .or_else(|| debian_urgency.and_then(distro_rating))
        .or_else(|| summary_rating(summary));
    let level = distro.or(score.map(Severity::from_score)).unwrap_or(Severity::Medium);
    (score, level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss_v3_base_scores_match_the_published_ones() {
        // Scores as NVD publishes them for these vectors.
        for (vector, score) in [
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8), // CVE-2021-3156 (sudo)
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H", 8.1), // CVE-2024-6387 (openssh)
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", 7.5), // CVE-2022-0778 (openssl)
            ("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:C/C:N/I:H/A:N", 6.5), // CVE-2016-2781 (coreutils)
            ("CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.0), // CVE-2025-26519 (musl)
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N", 0.0),
        ] {
            assert_eq!(cvss_base_score(vector), Some(score), "{vector}");
        }
    }

    #[test]
    fn cvss_v4_base_scores() {
        // Values from FIRST's CVSS 4.0 calculator.
        assert_eq!(cvss_base_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"), Some(9.3));
        assert_eq!(cvss_base_score("CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"), Some(8.5));
    }

    #[test]
    fn bad_vectors_give_no_score() {
        for v in ["", "CVSS:3.1/AV:X", "AV:N/AC:L/Au:N/C:P/I:P/A:P", "CVSS:9.9/AV:N", "garbage"] {
            assert_eq!(cvss_base_score(v), None, "{v}");
        }
    }

    #[test]
    fn scale_and_distro_words() {
        assert_eq!(Severity::from_score(9.8), Severity::High, "Critical counts as High");
        assert_eq!(Severity::from_score(7.0), Severity::High);
        assert_eq!(Severity::from_score(6.9), Severity::Medium);
        assert_eq!(Severity::from_score(4.0), Severity::Medium);
        assert_eq!(Severity::from_score(0.1), Severity::Low);
        assert_eq!(Severity::from_score(0.0), Severity::Informational);
        assert_eq!(distro_rating("negligible"), Some(Severity::Informational));
        assert_eq!(distro_rating("unimportant"), Some(Severity::Informational));
        assert_eq!(distro_rating("low**"), Some(Severity::Low));
        assert_eq!(distro_rating("medium"), Some(Severity::Medium));
        assert_eq!(distro_rating("critical"), Some(Severity::High));
        assert_eq!(distro_rating("not yet assigned"), None);
        assert_eq!(distro_rating("untriaged"), None);
        assert_eq!(summary_rating("Important: kernel security update"), Some(Severity::High));
        assert_eq!(summary_rating("Critical: firefox security update"), Some(Severity::High));
        assert_eq!(summary_rating("Moderate: nginx:1.22 security update"), Some(Severity::Medium));
        assert_eq!(summary_rating("Low: something"), Some(Severity::Low));
        assert_eq!(summary_rating("openssl - security update"), None);
        assert_eq!(summary_rating("nginx:1.22 update"), None);
        assert!(Severity::High < Severity::Informational, "sorting puts High first");
    }
}
