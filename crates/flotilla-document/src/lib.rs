//! Flotilla's command documents: versioned, parameterised scripts that Run Command sends to
//! nodes, in the shape of AWS SSM command documents (schema 2.2); AWS's own documents (schema
//! 1.2, 2.0 and 2.2) import unchanged.
//!
//! The life of a document:
//! 1. [`Document::parse`] reads YAML or JSON (at most 64 KiB) and checks every rule, reporting
//!    the field path and the line and column of what is wrong; [`import_ssm`] does the same for
//!    an AWS SSM document, converting its plugins and applying AWS's platform rules.
//! 2. [`Document::bind`] checks the values a caller gives (`--param NAME=VALUE`, repeatable) and
//!    fills in defaults.
//! 3. [`Document::plan`] substitutes `{{ name }}` references and expands `run:document` steps
//!    into a flat [`Plan`] of shell steps for the agent.
//!
//! Architecture invariant: this crate is pure. It does no I/O, knows no async runtime, network
//! or database, and takes the lookup of other documents as a function. Security invariant
//! (details in the `plan` module): a parameter value never becomes shell code the document
//! author did not write; values reach scripts only through environment variables, except a
//! document's script parameters ([`Document::is_script_parameter`]), which are the script.

mod action;
mod builtin;
mod document;
mod import;
mod parameter;
mod plan;
mod shell;
mod source;
mod store_ref;
mod template;

pub use action::{
    Action, DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS, MIN_TIMEOUT_SECONDS, PATCH_BASELINE, ParameterArgument,
    PatchAction, RUN_DOCUMENT, RUN_SHELL, ResourceAction, RunDocumentAction, STATE_APPLY, ShellAction,
    StateApplyAction, parse_resources,
};
pub use builtin::{
    ASSESS_BEST_PRACTICES, ASSESS_NETWORK_REACHABILITY, COLLECT_INVENTORY, DESIRED_STATE, DESIRED_STATE_PARAMETER,
    RUN_PATCH_BASELINE, RUN_SHELL_SCRIPT, builtin_documents,
};
pub use document::{Document, DocumentError, DocumentType, Platform, Position, SCHEMA_VERSION, Step};
pub use import::import_ssm;
pub use parameter::{
    AllowedPattern, BoundParameters, ENV_VAR_PREFIX, ParameterError, ParameterSpec, ParameterType, ParameterValue,
    parse_cli_params,
};
pub use plan::{
    COMMANDS_PARAMETER, ITEM_ENV_PREFIX, MAX_NESTING_DEPTH, PARAM_ENV_PREFIX, Plan, PlanError, PlannedStep, Resolver,
    ShellStep,
};
pub use source::{FieldPath, Location, MAX_DOCUMENT_BYTES, Segment};
pub use store_ref::{STORE_ENV_PREFIX, externalize_store_references};
