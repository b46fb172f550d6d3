//! Documents: versioned, parameterised command documents (Flotilla's own and imported AWS
//! SSM ones), the built-in set, and planning a run.
//!
//! Invariants: a stored document always parses (it is validated before it is stored, and the
//! original text is kept as written); `Flotilla-` names are reserved for built-ins, which are
//! (re)installed at start-up when their text changed.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use flotilla_core::command::DocumentFormat;
use flotilla_document::Document;
use flotilla_store::{DocumentHead, DocumentVersion};

use crate::app::AppState;
use crate::platform::{ServiceError, now_ms};
use crate::runcommand::engine::PlannedStep;

const BUILTIN_PREFIX: &str = "Flotilla-";
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// Parses stored or submitted text in its format.
pub fn parse(format: DocumentFormat, content: &str) -> Result<Document, ServiceError> {
    let parsed = match format {
        DocumentFormat::Flotilla => Document::parse(content),
        DocumentFormat::Ssm => flotilla_document::import_ssm(content),
    };
    parsed.map_err(|e| ServiceError::Invalid(format!("invalid document: {e}")))
}

fn validate_name(name: &str) -> Result<(), ServiceError> {
    let ok = (3..=128).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "`{name}` is not a valid document name: use 3 to 128 letters, digits, _ . -"
        )))
    }
}

/// Installs or refreshes the built-in documents.
pub async fn install_builtins(state: &AppState) -> Result<(), ServiceError> {
    for (name, content) in flotilla_document::builtin_documents() {
        let current = state.store.get_document(name, None).await?;
        if current.as_ref().map(|d| d.content.as_str()) != Some(content) {
            let description = parse(DocumentFormat::Flotilla, content)?.description().unwrap_or_default().to_owned();
            let version = state
                .store
                .put_document(&DocumentVersion {
                    name: name.to_owned(),
                    version: 0,
                    content: content.to_owned(),
                    description,
                    format: DocumentFormat::Flotilla,
                    created_at: now_ms(),
                })
                .await?;
            state.store.set_default_document_version(name, version).await?;
        }
    }
    Ok(())
}

/// One version of a document, with the document's default and latest version numbers.
#[derive(Debug, Clone)]
pub struct DocumentDetail {
    pub version: DocumentVersion,
    pub default_version: i64,
    pub latest_version: i64,
}

/// What an author submits: a new document or a new version of one.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub name: String,
    pub content: String,
    /// `flotilla` (the default) or `ssm`.
    pub format: Option<String>,
}

async fn detail(state: &AppState, d: DocumentVersion) -> Result<DocumentDetail, ServiceError> {
    let head = state.store.get_document_head(&d.name).await?;
    Ok(DocumentDetail {
        default_version: head.as_ref().map_or(d.version, |h| h.default_version),
        latest_version: head.as_ref().map_or(d.version, |h| h.latest_version),
        version: d,
    })
}

/// Every document's name, description, default and latest version.
pub async fn list(state: &AppState) -> Result<Vec<DocumentHead>, ServiceError> {
    Ok(state.store.list_documents().await?)
}

pub async fn get(state: &AppState, name: &str, version: Option<i64>) -> Result<DocumentDetail, ServiceError> {
    let doc = state.store.get_document(name, version).await?.ok_or_else(|| match version {
        Some(v) => ServiceError::missing_with(
            "document version",
            format!("{name}@{v}"),
            format!("document `{name}` has no version {v}"),
        ),
        None => ServiceError::missing("document", name, "list them with `flotilla documents ls`"),
    })?;
    detail(state, doc).await
}

/// Creates a document (`create: true`) or adds a version to an existing one.
pub async fn put(state: &AppState, req: NewDocument, create: bool) -> Result<DocumentDetail, ServiceError> {
    validate_name(&req.name)?;
    if req.name.starts_with(BUILTIN_PREFIX) {
        return Err(ServiceError::Invalid(format!(
            "names starting with `{BUILTIN_PREFIX}` are reserved for built-in documents"
        )));
    }
    if req.content.len() > MAX_DOCUMENT_BYTES {
        return Err(ServiceError::Invalid(format!("the document is {} bytes; the limit is 64 KB", req.content.len())));
    }
    let format = match req.format.as_deref() {
        None => DocumentFormat::Flotilla,
        Some(text) => DocumentFormat::from_str(text).map_err(|e| ServiceError::Invalid(e.to_string()))?,
    };
    let parsed = parse(format, &req.content)?;
    let exists = state.store.get_document(&req.name, None).await?.is_some();
    match (create, exists) {
        (true, true) => {
            return Err(ServiceError::clash(
                "document",
                req.name.clone(),
                format!("document `{}` already exists: add a version with `flotilla documents update`", req.name),
            ));
        }
        (false, false) => {
            return Err(ServiceError::missing_with(
                "document",
                req.name.clone(),
                format!("no document `{}` to update", req.name),
            ));
        }
        _ => {}
    }
    let version = state
        .store
        .put_document(&DocumentVersion {
            name: req.name.clone(),
            version: 0,
            content: req.content,
            description: parsed.description().unwrap_or_default().to_owned(),
            format,
            created_at: now_ms(),
        })
        .await?;
    get(state, &req.name, Some(version)).await
}

/// The documents `run:document` steps may reach from `root`, keyed by (name, version), with
/// `None` for a default version. `resolve` during planning is synchronous, so they are loaded
/// first: only the ones referenced (transitively), unless a step names its document through a
/// parameter, in which case every document's default version is a candidate.
async fn referenced_documents(
    state: &AppState,
    root: &Document,
) -> Result<HashMap<(String, Option<i64>), Document>, ServiceError> {
    use flotilla_document::Action;
    let mut library: HashMap<(String, Option<i64>), Document> = HashMap::new();
    let mut queue: Vec<Document> = vec![root.clone()];
    let mut templated = false;
    while let Some(document) = queue.pop() {
        for step in document.steps() {
            let Action::RunDocument(run) = &step.action else { continue };
            if run.document_name.contains("{{") || run.document_version.as_deref().is_some_and(|v| v.contains("{{")) {
                templated = true;
                continue;
            }
            let version = run.document_version.as_deref().and_then(|v| v.parse::<i64>().ok());
            let key = (run.document_name.clone(), version);
            if library.contains_key(&key) {
                continue;
            }
            // Unknown or unparsable documents stay out; planning reports them by name.
            if let Some(stored) = state.store.get_document(&key.0, version).await?
                && let Ok(parsed) = parse(stored.format, &stored.content)
            {
                queue.push(parsed.clone());
                library.insert(key, parsed);
            }
        }
    }
    if templated {
        for head in state.store.list_documents().await? {
            let key = (head.name.clone(), None);
            if library.contains_key(&key) {
                continue;
            }
            if let Some(stored) = state.store.get_document(&head.name, None).await?
                && let Ok(parsed) = parse(stored.format, &stored.content)
            {
                library.insert(key, parsed);
            }
        }
    }
    Ok(library)
}

/// Binds parameters and plans a run of `name` (its default version unless given): the
/// resolved version and the steps every node will run.
pub async fn plan(
    state: &AppState,
    name: &str,
    version: Option<i64>,
    params: &BTreeMap<String, Vec<String>>,
) -> Result<(i64, Vec<PlannedStep>), ServiceError> {
    let stored = state.store.get_document(name, version).await?.ok_or_else(|| match version {
        Some(v) => ServiceError::Invalid(format!("document `{name}` has no version {v}")),
        None => ServiceError::Invalid(format!("unknown document `{name}`: list them with `flotilla documents ls`")),
    })?;
    let document = parse(stored.format, &stored.content)?;
    let bound = document.bind(params).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let library = referenced_documents(state, &document).await?;
    let resolve = |doc: &str, version: Option<&str>| -> Option<Document> {
        let version = version.and_then(|v| v.parse::<i64>().ok());
        library.get(&(doc.to_owned(), version)).cloned()
    };
    let plan = document.plan(&bound, &resolve).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    // Every managed node is Linux: steps for other platforms are skipped, as in SSM 2.2.
    let steps = plan
        .steps
        .into_iter()
        .filter(|s| s.precondition.is_none_or(|p| p.as_str() == "Linux"))
        .map(|s| PlannedStep {
            name: s.name,
            script: s.action.script,
            working_directory: s.action.working_directory,
            timeout_seconds: s.action.timeout_seconds,
            env: s.action.env,
            agent_action: s.action.agent_action,
            agent_inputs: s.action.agent_inputs,
        })
        .collect();
    Ok((stored.version, steps))
}
