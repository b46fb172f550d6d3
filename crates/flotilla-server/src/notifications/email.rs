//! Email delivery: one plain-text message per event to a subscription's address, over SMTP
//! (lettre, rustls) with the server's `smtp_*` settings.
//!
//! The subject and body are written for a person: for an assessment (`Assessment.Completed`,
//! or one node's `Finding.Reported`) the counts by severity and the worst findings first, read
//! from the store; for any other event a summary of its detail. Every body ends with the event
//! as JSON, exactly as a webhook receives it. The Message-ID names the event and the
//! subscription, so a mail system can spot a repeat (delivery is at least once).
//! Invariants: an SMTP refusal or a connection failure is an `Err` saying which, with the
//! server's own words; nothing here decides about retries.

use std::fmt::Write as _;
use std::time::Duration;

use flotilla_core::Severity;
use flotilla_store::{EventRecord, FindingRecord};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::webhook::chain;
use crate::app::AppState;
use crate::platform::ServiceError;
use crate::platform::config::{ServerConfig, SmtpTls};

/// Findings listed in one email; the rest are counted, with the command that lists them.
const FINDINGS_LISTED: usize = 50;

/// Checks an address given to `subscriptions add --email`: `USER@DOMAIN`.
pub fn check_address(address: &str) -> Result<String, ServiceError> {
    let trimmed = address.trim();
    trimmed
        .parse::<Address>()
        .map(|a| a.to_string())
        .map_err(|e| ServiceError::Invalid(format!("email address `{address}` is not valid ({e}): use USER@DOMAIN")))
}

/// Refuses an email subscription on a server that cannot send mail.
pub fn check_configured(config: &ServerConfig) -> Result<(), ServiceError> {
    if config.smtp_host.is_none() {
        return Err(ServiceError::Invalid(
            "this server has no SMTP server configured: set smtp_host and smtp_from (FLOTILLA_SMTP_HOST, \
             FLOTILLA_SMTP_FROM) in its configuration, then subscribe the --email address"
                .into(),
        ));
    }
    Ok(())
}

/// An SMTP connection's settings and the From address.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// The mailer of one subscription: the server's SMTP settings, its timeout.
pub fn mailer(config: &ServerConfig, timeout: Duration) -> Result<Mailer, String> {
    let host = config.smtp_host.clone().ok_or("this server has no smtp_host configured")?;
    let from: Mailbox = config
        .smtp_from
        .as_deref()
        .ok_or("this server has no smtp_from configured")?
        .parse()
        .map_err(|e| format!("smtp_from is not an email address: {e}"))?;
    let tls = match config.smtp_tls {
        SmtpTls::None => Tls::None,
        mode => {
            let params = TlsParameters::new(host.clone()).map_err(|e| format!("cannot set up TLS: {}", chain(&e)))?;
            if mode == SmtpTls::Tls { Tls::Wrapper(params) } else { Tls::Required(params) }
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(config.smtp_port.unwrap_or_else(|| config.smtp_tls.default_port()))
        .tls(tls)
        .timeout(Some(timeout));
    if let (Some(user), Some(file)) = (&config.smtp_username, &config.smtp_password_file) {
        let password = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read smtp_password_file {}: {e}", file.display()))?;
        builder =
            builder.credentials(Credentials::new(user.clone(), password.trim_end_matches(['\r', '\n']).to_owned()));
    }
    Ok(Mailer { transport: builder.build(), from })
}

/// Sends one message; Err is what the SMTP server (or the network) said.
pub async fn send(mailer: &Mailer, to: &str, message_id: &str, subject: &str, body: String) -> Result<(), String> {
    let to: Mailbox = to.parse().map_err(|e| format!("the subscription's address `{to}` is not valid: {e}"))?;
    let message = Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(message_id.to_owned()))
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| format!("cannot build the message: {e}"))?;
    match mailer.transport.send(message).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_permanent() => Err(format!("SMTP server refused the message: {}", chain(&e))),
        Err(e) if e.is_transient() => Err(format!("SMTP server deferred the message: {}", chain(&e))),
        Err(e) => Err(format!("SMTP: {}", chain(&e))),
    }
}

/// What an event's email says.
#[derive(Debug, Clone, PartialEq)]
pub struct Mail {
    pub subject: String,
    pub body: String,
}

/// The findings an email about this event lists: an assessment run's, or one node's in it.
pub async fn findings_for(state: &AppState, event: &EventRecord) -> Result<Option<Vec<FindingRecord>>, ServiceError> {
    use flotilla_core::EventType;
    let run = event.detail.get("run_id").and_then(|v| v.as_str());
    let node = event.detail.get("node_id").and_then(|v| v.as_str());
    match (event.kind, run) {
        (EventType::AssessmentCompleted, Some(run)) => Ok(Some(state.store.run_findings(run, None).await?)),
        (EventType::FindingReported, Some(run)) => Ok(Some(state.store.run_findings(run, node).await?)),
        _ => Ok(None),
    }
}

fn score(f: &FindingRecord) -> f64 {
    f.score.as_deref().and_then(|s| s.parse::<f64>().ok()).unwrap_or(-1.0)
}

/// Most severe first; within a severity the highest score first, then by node and advisory so
/// the order is the same every time.
pub fn worst_first(findings: &mut [FindingRecord]) {
    findings.sort_by(|a, b| {
        a.severity
            .cmp(&b.severity)
            .then(score(b).total_cmp(&score(a)))
            .then_with(|| a.node_id.cmp(&b.node_id))
            .then_with(|| a.advisory_id.cmp(&b.advisory_id))
            .then_with(|| a.package.cmp(&b.package))
    });
}

fn counts_line(findings: &[FindingRecord]) -> String {
    Severity::ALL
        .iter()
        .map(|s| format!("{} {}", findings.iter().filter(|f| f.severity == *s).count(), s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn str_of<'a>(detail: &'a serde_json::Value, key: &str) -> &'a str {
    detail.get(key).and_then(|v| v.as_str()).unwrap_or("?")
}

/// The subject and body for `event` (`findings`: those [`findings_for`] read, if any).
pub fn compose(
    event: &serde_json::Value,
    kind: flotilla_core::EventType,
    findings: Option<Vec<FindingRecord>>,
) -> Mail {
    use flotilla_core::EventType;
    let detail = event.get("detail").cloned().unwrap_or(serde_json::Value::Null);
    let id = event.get("id").and_then(|v| v.as_str()).unwrap_or("?");
    let time = event.get("time").and_then(|v| v.as_str()).unwrap_or("?");
    let mut body = String::new();
    let subject = match (kind, findings) {
        (EventType::AssessmentCompleted | EventType::FindingReported, Some(mut findings)) => {
            worst_first(&mut findings);
            let run = str_of(&detail, "run_id");
            let (subject, intro) = if kind == EventType::AssessmentCompleted {
                let nodes = detail.get("node_count").and_then(serde_json::Value::as_i64).unwrap_or(0);
                let status = str_of(&detail, "status");
                (
                    format!("[Flotilla] Assessment {run} {status}: {} on {nodes} nodes", counts_line(&findings)),
                    format!("Assessment run {run} ended {status} at {time}, on {nodes} nodes."),
                )
            } else {
                let node = str_of(&detail, "node_id");
                (
                    format!("[Flotilla] Findings on {node}: {}", counts_line(&findings)),
                    format!("Assessment run {run} assessed node {node} ({}) at {time}.", str_of(&detail, "status")),
                )
            };
            let _ = writeln!(body, "{intro}\n\nFindings by severity:");
            for s in Severity::ALL {
                let _ = writeln!(body, "  {:<14}{}", s.as_str(), findings.iter().filter(|f| f.severity == s).count());
            }
            if findings.is_empty() {
                let _ = writeln!(body, "\nNo findings.");
            } else {
                let shown = findings.len().min(FINDINGS_LISTED);
                let _ = writeln!(body, "\nWorst first ({shown} of {}):", findings.len());
                for f in &findings[..shown] {
                    let fixed = f.fixed_version.as_deref().map(|v| format!(" -> fixed in {v}")).unwrap_or_default();
                    let score = f.score.as_deref().map(|s| format!(" (score {s})")).unwrap_or_default();
                    let _ = writeln!(
                        body,
                        "  {:<14}{}  {} {}{fixed}  on {}{score}\n                {}",
                        f.severity.as_str(),
                        f.advisory_id,
                        f.package,
                        f.installed_version,
                        f.node_id,
                        f.title
                    );
                }
                if findings.len() > shown {
                    let _ = writeln!(body, "  ... and {} more.", findings.len() - shown);
                }
                let node = if kind == EventType::FindingReported {
                    format!(" --node {}", str_of(&detail, "node_id"))
                } else {
                    String::new()
                };
                let _ = writeln!(body, "\nAll of them: flotilla findings ls --run {run}{node}");
            }
            subject
        }
        _ => {
            let resources: Vec<&str> = event
                .get("resources")
                .and_then(|v| v.as_array())
                .map(|a| a.iter().filter_map(|r| r.as_str()).collect())
                .unwrap_or_default();
            let status = detail.get("status").and_then(|v| v.as_str()).map(|s| format!(" {s}")).unwrap_or_default();
            let _ = writeln!(
                body,
                "{} at {time}{}.",
                kind.as_str(),
                if resources.is_empty() { String::new() } else { format!(" on {}", resources.join(", ")) }
            );
            if let Some(fields) = detail.as_object() {
                let _ = writeln!(body);
                for (k, v) in fields {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let _ = writeln!(body, "  {k}: {text}");
                }
            }
            format!("[Flotilla] {}{status}: {}", kind.as_str(), resources.first().copied().unwrap_or("-"))
        }
    };
    let json = serde_json::to_string_pretty(event).unwrap_or_else(|_| event.to_string());
    let _ = write!(body, "\nEvent {id}, as JSON:\n{json}\n");
    Mail { subject, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_core::EventType;

    fn finding(node: &str, advisory: &str, severity: Severity, score: Option<&str>) -> FindingRecord {
        FindingRecord {
            run_id: "run-1".into(),
            node_id: node.into(),
            rule: "cve".into(),
            advisory_id: advisory.into(),
            aliases: Vec::new(),
            package: "openssl".into(),
            installed_version: "3.0.1".into(),
            fixed_version: Some("3.0.2".into()),
            severity,
            score: score.map(str::to_owned),
            title: format!("{advisory} title"),
        }
    }

    #[test]
    fn an_assessment_lists_counts_then_the_worst_findings_first() {
        let event = serde_json::json!({
            "id": "ev-7", "time": "2026-01-01T00:00:00Z", "type": "Assessment.Completed",
            "resources": ["run-1"],
            "detail": {"run_id": "run-1", "status": "Completed", "node_count": 2},
        });
        let findings = vec![
            finding("mi-b", "CVE-LOW", Severity::Low, None),
            finding("mi-a", "CVE-HIGH-7", Severity::High, Some("7.5")),
            finding("mi-a", "CVE-MED", Severity::Medium, Some("5.0")),
            finding("mi-b", "CVE-HIGH-9", Severity::High, Some("9.8")),
        ];
        let mail = compose(&event, EventType::AssessmentCompleted, Some(findings));
        assert_eq!(
            mail.subject,
            "[Flotilla] Assessment run-1 Completed: 2 High, 1 Medium, 1 Low, 0 Informational on 2 nodes"
        );
        let order: Vec<usize> = ["CVE-HIGH-9", "CVE-HIGH-7", "CVE-MED", "CVE-LOW", "\"ev-7\""]
            .iter()
            .map(|a| mail.body.find(a).unwrap_or(usize::MAX))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{}", mail.body);
        assert!(mail.body.contains("  High          2\n"), "{}", mail.body);
        assert!(mail.body.contains("flotilla findings ls --run run-1\n"), "{}", mail.body);
    }

    #[test]
    fn other_events_are_summarised_with_their_json() {
        let event = serde_json::json!({
            "id": "ev-9", "time": "2026-01-01T00:00:00Z", "type": "Command.StatusChanged",
            "resources": ["cmd-1"], "detail": {"command_id": "cmd-1", "status": "Success"},
        });
        let mail = compose(&event, EventType::CommandStatusChanged, None);
        assert_eq!(mail.subject, "[Flotilla] Command.StatusChanged Success: cmd-1");
        assert!(mail.body.starts_with("Command.StatusChanged at 2026-01-01T00:00:00Z on cmd-1.\n"), "{}", mail.body);
        assert!(mail.body.contains("  status: Success\n"), "{}", mail.body);
        assert!(mail.body.contains("Event ev-9, as JSON:\n{"), "{}", mail.body);
    }

    #[test]
    fn addresses_are_checked() {
        assert_eq!(check_address(" ops@example.com ").ok().as_deref(), Some("ops@example.com"));
        for bad in ["", "ops", "ops@", "@example.com", "a b@example.com"] {
            assert!(matches!(check_address(bad), Err(ServiceError::Invalid(_))), "{bad}");
        }
    }
}
