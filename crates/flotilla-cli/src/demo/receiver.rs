//! The demo's webhook receiver: a local HTTP endpoint, subscribed to the shipped topic
//! `assessments` with a secret, that checks each delivery's `Flotilla-Signature` as any
//! receiver should (HMAC-SHA256 of `t.body` under the secret, compared in constant time, the
//! timestamp within five minutes) and prints one line per verified delivery. A delivery that
//! fails the check is answered 401 and printed as refused, so the server retries it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use aws_lc_rs::hmac;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use flotilla_api::{Client, CreateSubscription};

use crate::output::outln;

/// Oldest signature timestamp accepted: replays of old deliveries are refused.
const TOLERANCE_SECONDS: i64 = 300;

/// Why a delivery was refused.
fn check(secret: &[u8], headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), &'static str> {
    let sig = headers.get("flotilla-signature").and_then(|v| v.to_str().ok()).ok_or("no Flotilla-Signature header")?;
    let mut t = None;
    let mut v1 = None;
    for part in sig.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (t, v1) = (t.ok_or("no timestamp in the signature")?, v1.ok_or("no v1 in the signature")?);
    if (now - t).abs() > TOLERANCE_SECONDS {
        return Err("signature timestamp too far from now");
    }
    if v1.len() != 64 {
        return Err("v1 is not a SHA-256 MAC");
    }
    let mac: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&v1[i * 2..i * 2 + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| "v1 is not hex")?;
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, secret), &message, &mac).map_err(|_| "signature does not match")
}

/// One line about a verified event, for a person watching the demo.
fn describe(event: &serde_json::Value) -> String {
    let detail = &event["detail"];
    let kind = event["type"].as_str().unwrap_or("?");
    let id = event["id"].as_str().unwrap_or("?");
    let mut line = format!("webhook: verified {kind} {id}");
    if let Some(run) = detail["run_id"].as_str() {
        let counts: Vec<String> = ["High", "Medium", "Low", "Informational"]
            .iter()
            .filter_map(|s| detail["finding_counts"][*s].as_u64().filter(|n| *n > 0).map(|n| format!("{n} {s}")))
            .collect();
        line.push_str(&format!(
            " ({run} {}, {} nodes{}{})",
            detail["status"].as_str().unwrap_or("?"),
            detail["node_count"].as_i64().unwrap_or(0),
            if counts.is_empty() { "" } else { ": " },
            counts.join(", ")
        ));
    }
    line
}

/// Starts the receiver on a free local port and subscribes it to `assessments`.
pub async fn start(client: &Client) -> anyhow::Result<SocketAddr> {
    let secret: Arc<Vec<u8>> = Arc::new({
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness for the webhook secret"))?;
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes()
    });
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind the demo webhook receiver")?;
    let addr = listener.local_addr()?;
    let key = secret.clone();
    let app = axum::Router::new().route(
        "/flotilla",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let key = key.clone();
            async move {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
                    .unwrap_or(0);
                match check(&key, &headers, &body, now) {
                    Ok(()) => {
                        let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                        let _ = outln!("{}", describe(&event));
                        StatusCode::NO_CONTENT
                    }
                    Err(why) => {
                        let _ = outln!("webhook: refused a delivery: {why}");
                        StatusCode::UNAUTHORIZED
                    }
                }
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("the demo webhook receiver stopped: {e}");
        }
    });
    let sub = client
        .create_subscription(&CreateSubscription {
            topic: "assessments".into(),
            webhook: Some(format!("http://{addr}/flotilla")),
            secret: Some(String::from_utf8_lossy(&secret).into_owned()),
            ..Default::default()
        })
        .await
        .context("cannot subscribe the demo webhook receiver to `assessments`")?;
    outln!(
        "Webhook receiver on http://{addr}/flotilla subscribed to `assessments` ({}); it prints each delivery it verifies",
        sub.id
    )?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(secret: &[u8], t: i64, body: &[u8]) -> HeaderMap {
        let mut message = format!("{t}.").into_bytes();
        message.extend_from_slice(body);
        let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), &message);
        let hex: String = mac.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let mut h = HeaderMap::new();
        h.insert("flotilla-signature", format!("t={t},v1={hex}").parse().expect("header"));
        h
    }

    #[test]
    fn signatures_are_checked() {
        let body = br#"{"type":"Assessment.Completed"}"#;
        assert_eq!(check(b"k", &signed(b"k", 1000, body), body, 1010), Ok(()));
        assert_eq!(check(b"other", &signed(b"k", 1000, body), body, 1010), Err("signature does not match"));
        assert_eq!(check(b"k", &signed(b"k", 1000, body), b"{}", 1010), Err("signature does not match"));
        assert!(check(b"k", &signed(b"k", 1000, body), body, 2000).is_err(), "too old");
        assert!(check(b"k", &HeaderMap::new(), body, 1000).is_err());
    }

    #[test]
    fn lines_say_what_arrived() {
        let e = serde_json::json!({"id": "ev-3", "type": "Assessment.Completed",
            "detail": {"run_id": "ar-1", "status": "Completed", "node_count": 4, "finding_counts": {"High": 2, "Low": 0}}});
        assert_eq!(describe(&e), "webhook: verified Assessment.Completed ev-3 (ar-1 Completed, 4 nodes: 2 High)");
    }
}
