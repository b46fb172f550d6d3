//! Secrets: random tokens and codes, and the hashes under which they are stored.
//!
//! Invariant: API tokens and activation codes are high-entropy random strings, so a single
//! SHA-256 is the right stored form (a slow password hash adds nothing but latency).

use aws_lc_rs::digest;
use base64::Engine;

/// Fills a buffer from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // aws-lc's RNG only fails if the OS has no entropy source at all; that is unrecoverable.
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut buf).expect("the operating system's random number generator failed");
    buf
}

/// A URL-safe random secret with a recognisable prefix (so leaked tokens can be found by
/// secret scanners).
pub fn random_token(prefix: &str) -> String {
    let raw: [u8; 32] = random_bytes();
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    digest::digest(&digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_prefixed() {
        let a = random_token("flt_");
        let b = random_token("flt_");
        assert!(a.starts_with("flt_") && a.len() == 4 + 43);
        assert_ne!(a, b);
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
