//! Client calls for the Parameter Store and the key service.

use super::{Client, ClientError, enc};
use crate::parameters::*;

impl Client {
    pub async fn put_parameter(&self, req: &PutParameter) -> Result<Parameter, ClientError> {
        self.call(reqwest::Method::PUT, "/api/v1/parameters", Some(req)).await
    }

    /// One version: the latest, or the one `version` or `label` names.
    pub async fn get_parameter(
        &self,
        name: &str,
        version: Option<i64>,
        label: Option<&str>,
        decrypt: bool,
    ) -> Result<Parameter, ClientError> {
        let mut path = format!("/api/v1/parameters/value?name={}&decrypt={decrypt}", enc(name));
        if let Some(v) = version {
            path.push_str(&format!("&version={v}"));
        }
        if let Some(l) = label {
            path.push_str(&format!("&label={}", enc(l)));
        }
        self.get(&path).await
    }

    pub async fn list_parameters(
        &self,
        path: &str,
        recursive: bool,
        decrypt: bool,
    ) -> Result<Vec<Parameter>, ClientError> {
        self.get(&format!("/api/v1/parameters?path={}&recursive={recursive}&decrypt={decrypt}", enc(path))).await
    }

    pub async fn parameter_history(&self, name: &str, decrypt: bool) -> Result<Vec<Parameter>, ClientError> {
        self.get(&format!("/api/v1/parameters/history?name={}&decrypt={decrypt}", enc(name))).await
    }

    pub async fn label_parameter(&self, req: &LabelParameter) -> Result<Parameter, ClientError> {
        self.call(reqwest::Method::POST, "/api/v1/parameters/labels", Some(req)).await
    }

    pub async fn delete_parameter(&self, name: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(reqwest::Method::DELETE, &format!("/api/v1/parameters?name={}", enc(name)), None).await
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyVersion>, ClientError> {
        self.get("/api/v1/keys").await
    }

    pub async fn rotate_key(&self) -> Result<KeyVersion, ClientError> {
        self.call::<(), KeyVersion>(reqwest::Method::POST, "/api/v1/keys/rotate", None).await
    }
}
