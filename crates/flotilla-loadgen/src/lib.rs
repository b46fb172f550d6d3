//! flotilla-loadgen: many simulated agents in one process, speaking the real agent protocol
//! (gRPC `AgentChannel.Open` over mutual TLS) with real enrolled identities, and the
//! benchmarks built on them (`connections`, `fanout`, `inventory`, `assess`, `associate`).
//!
//! The simulated agent keeps only what the protocol needs (its identity, unacknowledged
//! results, the server's inventory hashes), so tens of thousands share one tokio runtime.
//! It never runs anything: a `RunInvocation` is answered after `delay` with a synthetic result.

pub mod advisories;
pub mod agent;
pub mod credentials;
pub mod packages;
pub mod scenario;
pub mod server;

pub use agent::{Behaviour, Fleet, FleetOptions, Stats};
pub use credentials::{Credential, enroll};
pub use server::{ProcStats, ServerProcess};

/// Raises this process's open-file limit to its hard limit (and the hard limit itself to the
/// kernel's maximum when we may), since every simulated agent holds a socket. Children (a
/// server started by us) inherit it. Returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return 0 };
    let max =
        std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|s| s.trim().parse::<u64>().ok()).unwrap_or(hard);
    // Raising the hard limit needs CAP_SYS_RESOURCE; without it keep the old one.
    if max > hard && setrlimit(Resource::RLIMIT_NOFILE, max, max).is_ok() {
        return max;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
