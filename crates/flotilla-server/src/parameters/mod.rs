//! Parameter Store service: put (versions, overwrite, the 100-version window), get by version
//! or label, list by path, history, labels, delete; and the resolution of Parameter Store
//! references (`{{param:...}}` and AWS's `{{ssm:...}}` / `{{ssm-secure:...}}`) for the engine.
//!
//! Invariants: rules come from `flotilla_core::parameter` and are checked before anything is
//! stored; a SecureString value is sealed by the key service bound to (name, version) before it
//! reaches the store, and is opened only for a caller that asks to decrypt (or for the engine,
//! at send time); events name the parameter and version, never the value.

pub mod http;

use std::str::FromStr;

use base64::Engine as _;
use flotilla_core::parameter::{
    self as rules, MAX_LABELS_PER_VERSION, MAX_VERSIONS, ParameterType, Selector, Tier, validate_description,
    validate_labels, validate_name, validate_path, validate_value,
};
use flotilla_store::{ParameterLabel, ParameterPut, ParameterRecord};

use crate::app::AppState;
use crate::platform::keys::{Binding, KeyError, KeyVersionInfo};
use crate::platform::{ServiceError, now_ms};

/// Puts retried after losing a race for a version before giving up.
const PUT_ATTEMPTS: usize = 5;

fn invalid(e: rules::ParameterRuleError) -> ServiceError {
    ServiceError::Invalid(e.to_string())
}

fn key_error(e: KeyError) -> ServiceError {
    match e {
        KeyError::Tampered { .. } | KeyError::Malformed { .. } => ServiceError::Integrity(e.to_string()),
        other => ServiceError::Internal(other.to_string()),
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

async fn seal(state: &AppState, name: &str, version: i64, value: &str) -> Result<String, ServiceError> {
    let sealed =
        state.keys.seal(Binding::Parameter { name, version }, value.as_bytes().to_vec()).await.map_err(key_error)?;
    Ok(b64().encode(sealed))
}

/// The clear value of a stored record (decrypting a SecureString).
async fn open(state: &AppState, record: &ParameterRecord) -> Result<String, ServiceError> {
    if record.kind != ParameterType::SecureString {
        return Ok(record.value.clone());
    }
    let what = format!("parameter {} version {}", record.name, record.version);
    let bytes = b64().decode(&record.value).map_err(|_| {
        ServiceError::Integrity(format!(
            "{what} failed its integrity check (its stored form is not base64); it is not returned"
        ))
    })?;
    let clear = state
        .keys
        .open(Binding::Parameter { name: &record.name, version: record.version }, bytes)
        .await
        .map_err(key_error)?;
    String::from_utf8(clear).map_err(|_| ServiceError::Integrity(format!("{what} decrypted to invalid UTF-8")))
}

/// What an operator stores: a value for `name`, with its type and tier as they were given
/// (checked here; absent means keep the current type, or String and Standard for a new one).
#[derive(Debug, Clone, Default)]
pub struct NewParameter {
    pub name: String,
    pub value: String,
    pub kind: Option<String>,
    pub description: Option<String>,
    pub overwrite: bool,
    pub tier: Option<String>,
}

/// One version of a parameter as a caller may see it.
#[derive(Debug, Clone)]
pub struct ParameterView {
    /// As stored; its `value` is sealed for a SecureString: show `value` below instead.
    pub record: ParameterRecord,
    /// The clear value; `None` for a SecureString the caller did not ask to decrypt.
    pub value: Option<String>,
}

async fn view(state: &AppState, record: ParameterRecord, decrypt: bool) -> Result<ParameterView, ServiceError> {
    let value =
        if record.kind == ParameterType::SecureString && !decrypt { None } else { Some(open(state, &record).await?) };
    Ok(ParameterView { record, value })
}

fn not_found(name: &str) -> ServiceError {
    ServiceError::missing_with(
        "parameter",
        name,
        format!("no parameter `{name}`; list them with `flotilla params ls --recursive`"),
    )
}

pub async fn put(state: &AppState, req: NewParameter) -> Result<ParameterView, ServiceError> {
    validate_name(&req.name).map_err(invalid)?;
    let asked_kind = req.kind.as_deref().map(ParameterType::from_str).transpose().map_err(invalid)?;
    let requested_tier = Tier::from_str(req.tier.as_deref().unwrap_or("Standard")).map_err(invalid)?;
    let description = req.description.clone().unwrap_or_default();
    validate_description(&description).map_err(invalid)?;
    for _ in 0..PUT_ATTEMPTS {
        let head = state.store.get_parameter(&req.name, None).await?;
        // Like AWS, a parameter goes from Standard to Advanced, never back.
        let tier = match &head {
            Some(h) if h.tier == Tier::Advanced => Tier::Advanced,
            _ => requested_tier,
        };
        validate_value(&req.value, tier).map_err(invalid)?;
        if head.is_some() && !req.overwrite {
            return Err(exists(&req.name));
        }
        let version = head.as_ref().map(|h| h.version + 1).unwrap_or(1);
        // Without a type, an overwrite keeps the current one: a SecureString must never turn
        // into a String (stored in clear) because a flag was left out.
        let kind = match (asked_kind, &head) {
            (Some(kind), _) => kind,
            (None, Some(h)) => h.kind,
            (None, None) => ParameterType::String,
        };
        let value = match kind {
            ParameterType::SecureString => seal(state, &req.name, version, &req.value).await?,
            _ => req.value.clone(),
        };
        let record = ParameterRecord {
            name: req.name.clone(),
            version,
            kind,
            tier,
            description: if req.description.is_none() {
                head.as_ref().map(|h| h.description.clone()).unwrap_or_default()
            } else {
                description.clone()
            },
            value,
            labels: Vec::new(),
            created_at: now_ms(),
        };
        match state.store.put_parameter(&record, req.overwrite, MAX_VERSIONS).await? {
            ParameterPut::Stored => {
                tracing::info!(parameter = %req.name, version, "parameter stored");
                return view(state, record, false).await;
            }
            ParameterPut::Exists => return Err(exists(&req.name)),
            ParameterPut::OldestLabelled { version, labels } => {
                return Err(ServiceError::clash(
                    "parameter",
                    req.name.clone(),
                    format!(
                        "`{}` already has {MAX_VERSIONS} versions and the oldest (version {version}) carries labels \
                         {}; move those labels to a newer version with `flotilla params label` first",
                        req.name,
                        labels.join(", ")
                    ),
                ));
            }
            ParameterPut::Conflict => continue,
        }
    }
    Err(ServiceError::clash(
        "parameter",
        req.name.clone(),
        format!("`{}` is being changed by others at the same time; try again", req.name),
    ))
}

fn exists(name: &str) -> ServiceError {
    ServiceError::clash(
        "parameter",
        name,
        format!("parameter `{name}` already exists; pass --overwrite to store a new version (the old ones are kept)"),
    )
}

/// The version `selector` names; `Missing` with what exists when there is none.
async fn find(state: &AppState, name: &str, selector: &Selector) -> Result<ParameterRecord, ServiceError> {
    validate_name(name).map_err(invalid)?;
    let version = match selector {
        Selector::Latest => None,
        Selector::Version(v) => Some(*v),
        Selector::Label(label) => match state.store.parameter_label(name, label).await? {
            Some(v) => Some(v),
            None => {
                return Err(match state.store.get_parameter(name, None).await? {
                    Some(_) => ServiceError::missing_with(
                        "parameter label",
                        format!("{name}:{label}"),
                        format!(
                            "parameter `{name}` has no label `{label}`; see its labels with `flotilla params history \
                             {name}`"
                        ),
                    ),
                    None => not_found(name),
                });
            }
        },
    };
    match state.store.get_parameter(name, version).await? {
        Some(record) => Ok(record),
        None => Err(match (version, state.store.get_parameter(name, None).await?) {
            (Some(v), Some(latest)) => ServiceError::missing_with(
                "parameter version",
                format!("{name}:{v}"),
                format!(
                    "parameter `{name}` has no version {v} (latest is {}; only the last {MAX_VERSIONS} are kept); \
                     see `flotilla params history {name}`",
                    latest.version
                ),
            ),
            _ => not_found(name),
        }),
    }
}

pub async fn get(
    state: &AppState,
    name: &str,
    selector: Selector,
    decrypt: bool,
) -> Result<ParameterView, ServiceError> {
    let record = find(state, name, &selector).await?;
    view(state, record, decrypt).await
}

/// The clear value a reference names, for the engine at send time. The reference's spelling
/// decides which types it may name (`ssm-secure:` only SecureString, `ssm:` anything else), as
/// in AWS, so a document written for AWS gets the value it would get there or a refusal.
pub async fn resolve(state: &AppState, reference: &rules::Reference) -> Result<String, ServiceError> {
    let record = find(state, &reference.name, &reference.selector).await?;
    reference
        .kind
        .accepts(record.kind)
        .map_err(|why| ServiceError::Invalid(format!("parameter `{}` cannot be used here: {why}", reference.name)))?;
    open(state, &record).await
}

pub async fn list(
    state: &AppState,
    path: &str,
    recursive: bool,
    decrypt: bool,
) -> Result<Vec<ParameterView>, ServiceError> {
    validate_path(path).map_err(invalid)?;
    let prefix = if path.ends_with('/') { path.to_owned() } else { format!("{path}/") };
    let mut out = Vec::new();
    for record in state.store.list_parameters(&prefix).await? {
        if rules::is_under(&record.name, path, recursive) {
            out.push(view(state, record, decrypt).await?);
        }
    }
    Ok(out)
}

pub async fn history(state: &AppState, name: &str, decrypt: bool) -> Result<Vec<ParameterView>, ServiceError> {
    validate_name(name).map_err(invalid)?;
    let records = state.store.parameter_history(name).await?;
    if records.is_empty() {
        return Err(not_found(name));
    }
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        out.push(view(state, record, decrypt).await?);
    }
    Ok(out)
}

/// Puts `labels` on version `version` of `name` (moving them from another version).
pub async fn label(
    state: &AppState,
    name: &str,
    version: i64,
    labels: &[String],
) -> Result<ParameterView, ServiceError> {
    validate_name(name).map_err(invalid)?;
    if labels.is_empty() {
        return Err(ServiceError::Invalid("give at least one label, e.g. `flotilla params label /a 2 prod`".into()));
    }
    validate_labels(labels).map_err(invalid)?;
    match state.store.label_parameter(name, version, labels, MAX_LABELS_PER_VERSION).await? {
        ParameterLabel::Labelled => {}
        ParameterLabel::NoSuchVersion => {
            find(state, name, &Selector::Version(version)).await?;
            return Err(not_found(name));
        }
        ParameterLabel::TooMany { limit } => {
            return Err(ServiceError::Invalid(format!(
                "version {} of `{}` would carry more than {limit} labels; move some to another version first",
                version, name
            )));
        }
    }
    get(state, name, Selector::Version(version), false).await
}

pub async fn delete(state: &AppState, name: &str) -> Result<(), ServiceError> {
    validate_name(name).map_err(invalid)?;
    if !state.store.delete_parameter(name).await? {
        return Err(not_found(name));
    }
    tracing::info!(parameter = %name, "parameter deleted");
    Ok(())
}

/// Master key versions, for `flotilla keys ls`.
pub fn key_versions(state: &AppState) -> Vec<KeyVersionInfo> {
    state.keys.provider().versions()
}

/// Makes a new master key version current and records it in the store.
pub async fn rotate_key(state: &AppState) -> Result<KeyVersionInfo, ServiceError> {
    let info = state.keys.provider().rotate(now_ms()).await.map_err(|e| ServiceError::Internal(e.to_string()))?;
    let key = crate::platform::keys::KeyRef { key_id: info.key_id.clone(), version: info.version };
    if let Some(check_value) = state.keys.provider().check_value(&key) {
        state
            .store
            .record_master_key(&flotilla_store::MasterKeyRecord {
                key_id: info.key_id.clone(),
                version: i64::from(info.version),
                check_value,
                created_at: info.created_at,
            })
            .await?;
    }
    tracing::info!(key_id = %info.key_id, version = info.version, "master key rotated");
    Ok(info)
}

/// Checks the Parameter Store references (`{{param:...}}`, `{{ssm:...}}`, `{{ssm-secure:...}}`)
/// of one planned step (syntax and placement only).
pub fn check_references<'a>(step: &str, script: &str, env: impl Iterator<Item = &'a String>) -> Result<(), String> {
    let fail = |e: String| format!("step `{step}`: {e}");
    let (_, vars) = flotilla_document::externalize_store_references(script, 0).map_err(fail)?;
    for (_, reference) in &vars {
        rules::parse_references(reference).map_err(|e| fail(e.to_string()))?;
    }
    for value in env {
        rules::parse_references(value).map_err(|e| fail(e.to_string()))?;
    }
    Ok(())
}

/// True when any part of the steps mentions a Parameter Store reference (the fast path: most
/// commands have none and are sent without touching the store).
pub fn mentions_references(steps: &[flotilla_proto::v1::ShellStep]) -> bool {
    steps.iter().any(|s| {
        rules::mentions_reference(&s.script)
            || rules::mentions_reference(&s.working_directory)
            || s.env.values().any(|v| rules::mentions_reference(v))
            || s.agent_inputs.values().any(|v| rules::mentions_reference(v))
    })
}

/// Resolves every Parameter Store reference in the steps, for one send to a node. References in script
/// text become `FLOTILLA_STORE_<i>` variable references (the value goes in the environment,
/// never into the script); in environment values, the working directory and the inputs of a
/// desired-state action, which are data, the value is substituted. The result lives only in the message sent over the agent's
/// mutually authenticated stream: it is never stored or logged. An unknown parameter, version
/// or label is an error that says which.
pub async fn resolve_steps(
    state: &AppState,
    steps: &[flotilla_proto::v1::ShellStep],
) -> Result<Vec<flotilla_proto::v1::ShellStep>, String> {
    let mut cache: std::collections::HashMap<(rules::ReferenceKind, String, String), String> =
        std::collections::HashMap::new();
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let mut step = step.clone();
        let (script, vars) = flotilla_document::externalize_store_references(&step.script, 0)
            .map_err(|e| format!("step `{}`: {e}", step.name))?;
        step.script = script;
        for (var, reference) in vars {
            step.env.insert(var, reference);
        }
        for value in step.env.values_mut() {
            if rules::mentions_reference(value) {
                *value =
                    substitute(state, &mut cache, value).await.map_err(|e| format!("step `{}`: {e}", step.name))?;
            }
        }
        // A desired-state action's inputs are data (file content, a mode): substituted.
        for value in step.agent_inputs.values_mut() {
            if rules::mentions_reference(value) {
                *value =
                    substitute(state, &mut cache, value).await.map_err(|e| format!("step `{}`: {e}", step.name))?;
            }
        }
        if rules::mentions_reference(&step.working_directory) {
            step.working_directory = substitute(state, &mut cache, &step.working_directory)
                .await
                .map_err(|e| format!("step `{}`: {e}", step.name))?;
        }
        out.push(step);
    }
    Ok(out)
}

async fn substitute(
    state: &AppState,
    cache: &mut std::collections::HashMap<(rules::ReferenceKind, String, String), String>,
    text: &str,
) -> Result<String, String> {
    let references = rules::parse_references(text).map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for reference in references {
        out.push_str(text.get(at..reference.start).unwrap_or_default());
        let key = (reference.kind, reference.name.clone(), reference.selector.to_string());
        let value = match cache.get(&key) {
            Some(v) => v.clone(),
            None => {
                let written = text.get(reference.start..reference.end).unwrap_or_default();
                let v = resolve(state, &reference)
                    .await
                    .map_err(|e| format!("cannot resolve {written} ({}): {e}", reference.selector))?;
                cache.insert(key, v.clone());
                v
            }
        };
        out.push_str(&value);
        at = reference.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    Ok(out)
}
