//! Agents that connect (TLS, stream, Hello) and never heartbeat are marked ConnectionLost after
//! the missed-heartbeat window, while the server keeps serving the others.

mod common;

use std::time::Duration;

use common::{eventually, setup};
use flotilla_loadgen::scenario::fan_out_once;
use flotilla_loadgen::{Behaviour, Fleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_agents_are_marked_lost_and_the_rest_still_work() {
    let s = setup("1s", 10).await;
    let (silent_creds, normal_creds) = s.creds.split_at(5);
    let silent_ids: Vec<String> = silent_creds.iter().map(|c| c.node_id.clone()).collect();
    let normal_ids: Vec<String> = normal_creds.iter().map(|c| c.node_id.clone()).collect();
    let mut silent_opts = s.options();
    silent_opts.behaviour = Behaviour::Silent;
    let silent = Fleet::start(silent_opts, silent_creds.to_vec(), 0);
    let normal = Fleet::start(s.options(), normal_creds.to_vec(), 5);
    eventually("all connected", Duration::from_secs(20), || async {
        silent.connected() == 5 && normal.connected() == 5
    })
    .await;
    // 3 missed heartbeats of 1 s, checked by the liveness worker.
    eventually("silent nodes ConnectionLost", Duration::from_secs(20), || async {
        let nodes = s.admin.list_nodes(&[]).await.expect("nodes");
        nodes.iter().filter(|n| silent_ids.contains(&n.id)).all(|n| n.status == "ConnectionLost")
    })
    .await;
    let nodes = s.admin.list_nodes(&[]).await.expect("nodes");
    for n in nodes.iter().filter(|n| normal_ids.contains(&n.id)) {
        assert_eq!(n.status, "Online", "heartbeating node {} stays Online", n.id);
    }
    let run = fan_out_once(&s.admin, &normal, normal_ids.clone(), 5, "100%", Duration::from_secs(30))
        .await
        .expect("fan-out to the healthy agents");
    assert_eq!(run["command_status"], "Success", "{run}");
    assert!(run["seconds_to_all_results"].is_number(), "{run}");
    silent.stop().await;
    normal.stop().await;
}
