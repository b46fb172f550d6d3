//! An agent that sends faster than the server reads: the server's memory stays bounded and the
//! other agents still get commands through.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, rss_bytes, setup};
use flotilla_loadgen::scenario::fan_out_once;
use flotilla_loadgen::{Behaviour, Fleet, Stats};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_agent_does_not_grow_the_server_or_starve_others() {
    let s = setup("1s", 11).await;
    let pid = s.server.pid().expect("server pid");
    let (flood_creds, normal_creds) = s.creds.split_at(1);
    let normal_ids: Vec<String> = normal_creds.iter().map(|c| c.node_id.clone()).collect();
    let normal = Fleet::start(s.options(), normal_creds.to_vec(), 1);
    eventually("normal agents connected", Duration::from_secs(20), || async { normal.connected() == 10 }).await;
    let before = rss_bytes(pid);
    let mut flood_opts = s.options();
    flood_opts.behaviour = Behaviour::Flood;
    let flood = Fleet::start(flood_opts, flood_creds.to_vec(), 0);
    let started = Instant::now();
    let mut peak = before;
    let mut fanned_out = false;
    while started.elapsed() < Duration::from_secs(8) {
        peak = peak.max(rss_bytes(pid));
        if !fanned_out && started.elapsed() > Duration::from_secs(2) {
            let run = fan_out_once(&s.admin, &normal, normal_ids.clone(), 10, "100%", Duration::from_secs(30))
                .await
                .expect("fan-out during the flood");
            assert_eq!(run["command_status"], "Success", "{run}");
            fanned_out = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = Stats::get(&flood.stats().flood_messages);
    assert!(sent > 1000, "the flooder got {sent} messages out");
    let growth = peak.saturating_sub(before);
    assert!(growth < 200 << 20, "server RSS grew by {} MiB ({} -> {})", growth >> 20, before >> 20, peak >> 20);
    assert!(fanned_out);
    flood.stop().await;
    normal.stop().await;
}
