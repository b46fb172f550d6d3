//! Test harness: starts real `flotilla` servers and `flotilla-agent` processes in temporary
//! directories, and throwaway PostgreSQL databases, so integration tests drive Flotilla the
//! way an operator does. Nothing here fakes a component, except `fake_server`: a scripted agent
//! channel for tests of the real agent's side of the protocol.

// The testkit starts Flotilla's own binaries and test tools, not node workloads.
#![allow(clippy::disallowed_methods)]

pub mod fake_server;
pub mod packages;
pub mod postgres;
pub mod process;

pub use fake_server::FakeServer;
pub use process::{Agent, TestServer, bin_path, start_fleet, wait_until, write_root};

/// Says why a test that needs machine tools (dpkg, dnf, useradd...) does nothing here. Where
/// `FLOTILLA_TEST_REQUIRE_TOOLS` is set (scripts/test.sh sets it after installing them, as
/// root), a missing tool fails the test instead: a skipped test must never pass CI.
pub fn skip(why: &str) {
    assert!(
        std::env::var_os("FLOTILLA_TEST_REQUIRE_TOOLS").is_none(),
        "{why}, but FLOTILLA_TEST_REQUIRE_TOOLS says this machine has every tool the tests need"
    );
    eprintln!("SKIPPED: {why}");
}
