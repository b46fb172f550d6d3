//! The platform layer: what every capability stands on (store access, artifacts, keys, PKI,
//! event log, scheduler, workers, registry, listener, config, metrics). It knows no capability.

pub mod status;
pub mod worker;
