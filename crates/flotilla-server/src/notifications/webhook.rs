//! Webhook delivery: one signed HTTPS (or, when the URL says so, HTTP) POST of an event.
//!
//! The body is the event exactly as `GET /api/v1/events` (and `flotilla events ls -o json`)
//! shows it; headers `Flotilla-Event-Id` and `Flotilla-Signature: t=UNIX_SECONDS,v1=HEX`, the
//! lowercase hex HMAC-SHA256 under the subscription's secret of `UNIX_SECONDS.BODY`.
//! Invariants: any 2xx is delivered; anything else, a redirect included (never followed), a
//! timeout, a closed connection or a certificate the subscription does not trust, is a failure
//! whose message says which.

use std::time::Duration;

use aws_lc_rs::hmac;
use flotilla_core::notification::{signature_header, signed_payload};

use crate::platform::ServiceError;

/// Refuses a URL that is not `https://HOST...` or `http://HOST...`.
pub fn check_url(url: &str) -> Result<(), ServiceError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        ServiceError::Invalid(format!("webhook URL `{url}` is not a URL ({e}): use https://HOST[:PORT]/PATH"))
    })?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(ServiceError::Invalid(format!(
            "webhook URL `{url}` must start with https:// (or http://) and name a host"
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ServiceError::Invalid(
            "a webhook URL must not carry credentials: the receiver checks the Flotilla-Signature header instead"
                .into(),
        ));
    }
    Ok(())
}

fn certificates(pem: &str) -> Result<Vec<reqwest::Certificate>, String> {
    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("it holds no PEM certificate".into());
    }
    Ok(certs)
}

/// Refuses CA file contents that hold no certificate.
pub fn check_ca(pem: &str) -> Result<(), ServiceError> {
    certificates(pem)
        .map(|_| ())
        .map_err(|e| ServiceError::Invalid(format!("the --ca file is not usable: {e}; give PEM CA certificates")))
}

/// The HTTP client of one subscription: its timeout, its CA (only it, when given), no redirects.
pub fn client(timeout: Duration, ca_pem: Option<&str>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(16)
        .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_pem {
        builder = builder.tls_certs_only(certificates(pem)?);
    }
    builder.build().map_err(|e| format!("cannot build the webhook client: {}", chain(&e)))
}

/// An error with its causes, so a TLS, connection or SMTP failure says what happened.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The `Flotilla-Signature` header for `body` at `unix_seconds`.
pub fn sign(secret: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    signature_header(unix_seconds, hmac::sign(&key, &signed_payload(unix_seconds, body)).as_ref())
}

/// One attempt: Ok on a 2xx, otherwise what went wrong.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    event_id: &str,
    body: Vec<u8>,
    unix_seconds: i64,
) -> Result<(), String> {
    let signature = sign(secret, unix_seconds, &body);
    let reply = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("Flotilla-Event-Id", event_id)
        .header("Flotilla-Signature", signature)
        .body(body)
        .send()
        .await;
    match reply {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) if r.status().is_redirection() => Err(format!(
            "HTTP {} (redirects are not followed: subscribe the final URL{})",
            r.status(),
            r.headers().get("location").and_then(|l| l.to_str().ok()).map(|l| format!(", {l}")).unwrap_or_default()
        )),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) if e.is_timeout() => Err(format!("timed out: {}", chain(&e))),
        Err(e) => Err(chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_time_dot_body() {
        // RFC 4231 test case 2 ("Jefe"), with the message split as `t.body`.
        let sig = sign(b"Jefe", 0, b"");
        assert!(sig.starts_with("t=0,v1="));
        let message = b"what do ya want for nothing?";
        // HMAC over "0." + body must equal HMAC over the joined bytes.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        let direct: String = hmac::sign(&key, &[b"0.".as_slice(), message].concat())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sign(b"Jefe", 0, message), format!("t=0,v1={direct}"));
        let rfc: String = hmac::sign(&key, message).as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(rfc, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn urls_and_cas_are_checked() {
        assert!(check_url("https://hooks.example/x").is_ok());
        assert!(check_url("http://127.0.0.1:9/x").is_ok());
        for bad in ["ftp://x/y", "hooks.example", "https://", "https://u:p@h/x"] {
            assert!(matches!(check_url(bad), Err(ServiceError::Invalid(_))), "{bad}");
        }
        assert!(check_ca("not a pem").is_err());
    }
}
