//! Client calls for sessions' records (the byte streams are opened by the CLI itself).

use super::{Client, ClientError, enc};
use crate::sessions::*;

impl Client {
    pub async fn list_sessions(&self, node: Option<&str>) -> Result<Vec<Session>, ClientError> {
        match node {
            Some(node) => self.get(&format!("/api/v1/sessions?node={}", enc(node))).await,
            None => self.get("/api/v1/sessions").await,
        }
    }

    pub async fn get_session(&self, id: &str) -> Result<Session, ClientError> {
        self.get(&format!("/api/v1/sessions/{}", enc(id))).await
    }

    pub async fn terminate_session(&self, id: &str) -> Result<Session, ClientError> {
        self.call::<(), Session>(reqwest::Method::POST, &format!("/api/v1/sessions/{}/terminate", enc(id)), None).await
    }

    /// The session's transcript as recorded (asciicast v2 text).
    pub async fn session_transcript(&self, id: &str) -> Result<Vec<u8>, ClientError> {
        self.send::<()>(reqwest::Method::GET, &format!("/api/v1/sessions/{}/transcript", enc(id)), None).await
    }
}
