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
