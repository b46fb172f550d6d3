//! Faults during a fan-out: 10% of agents dropping and reconnecting, and a server restart
//! (SIGKILL + start). Every invocation must end final, the command must finish, and no
//! invocation may be executed twice.

mod common;

use std::time::Duration;

use common::{FINAL, eventually, setup};
use flotilla_api::CreateCommand;
use flotilla_loadgen::Fleet;

fn command(concurrency: &str) -> CreateCommand {
    CreateCommand {
        document: "Flotilla-RunShellScript".into(),
        document_version: None,
        parameters: [("commands".to_owned(), vec!["true".to_owned()])].into(),
        targets: vec!["all".into()],
        max_concurrency: Some(concurrency.into()),
        max_errors: Some("100%".into()),
        timeout_seconds: None,
        delivery_timeout_seconds: None,
        comment: None,
        notify: None,
        notify_on: Vec::new(),
    }
}

/// Waits until the command is final; returns its invocations' statuses.
async fn finished(
    admin: &flotilla_api::Client,
    id: &str,
    timeout: Duration,
    log: impl Fn() -> String,
) -> (String, Vec<String>) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let c = admin.get_command(id).await.expect("command");
        let invocations = c.invocations.unwrap_or_default();
        if ["Success", "Failed", "Cancelled"].contains(&c.status.as_str()) {
            return (c.status, invocations.into_iter().map(|i| i.status).collect());
        }
        if std::time::Instant::now() > deadline {
            let stuck: Vec<String> = invocations
                .iter()
                .filter(|i| !FINAL.contains(&i.status.as_str()))
                .map(|i| format!("{}={}", i.node_id, i.status))
                .collect();
            panic!(
                "command {id} still {} after {timeout:?}; counts {:?}; not final: {stuck:?}\nserver log:\n{}",
                c.status,
                c.counts,
                log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_percent_of_agents_reconnecting_during_a_fan_out() {
    let n = 100;
    let s = setup("2s", n).await;
    let mut opts = s.options();
    opts.delay = Duration::from_millis(800);
    let fleet = Fleet::start(opts, s.creds.clone(), 0);
    eventually("all connected", Duration::from_secs(60), || async { fleet.connected() == n }).await;
    let cmd = s.admin.create_command(&command("100%")).await.expect("command");
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in (0..n).filter(|i| i % 10 == round) {
            fleet.drop_connection(i);
        }
    }
    let (status, invocations) = finished(&s.admin, &cmd.id, Duration::from_secs(90), || s.server.log_text()).await;
    assert_eq!(invocations.len(), n);
    assert!(invocations.iter().all(|st| FINAL.contains(&st.as_str())), "{invocations:?}");
    assert_eq!(status, "Success", "every agent answered: {invocations:?}");
    let executions = fleet.stats().executions_by_id();
    assert_eq!(executions.len(), n);
    assert!(executions.values().all(|&c| c == 1), "executed twice: {executions:?}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_during_a_fan_out_loses_nothing_and_runs_nothing_twice() {
    let n = 300;
    let mut s = setup("2s", n).await;
    let mut opts = s.options();
    opts.delay = Duration::from_millis(1500);
    let fleet = Fleet::start(opts, s.creds.clone(), 0);
    eventually("all connected", Duration::from_secs(90), || async { fleet.connected() == n }).await;
    let cmd = s.admin.create_command(&command("100%")).await.expect("command");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = fleet.stats().executions_by_id().len();
    tokio::task::block_in_place(|| s.server.restart()).expect("server restarts");
    let (status, invocations) = finished(&s.admin, &cmd.id, Duration::from_secs(120), || s.server.log_text()).await;
    assert_eq!(invocations.len(), n);
    assert!(invocations.iter().all(|st| FINAL.contains(&st.as_str())), "{invocations:?}");
    assert_eq!(status, "Success", "no invocation lost: {invocations:?}");
    let executions = fleet.stats().executions_by_id();
    assert_eq!(executions.len(), n, "{before} had started before the restart");
    assert!(executions.values().all(|&c| c == 1), "executed twice: {executions:?}");
    fleet.stop().await;
}
