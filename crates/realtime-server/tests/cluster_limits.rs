//! Tenant limits count across nodes (`REDIS_URL`): with `max_concurrent_users` at 2, two
//! users on two nodes fill the tenant for a third node too, until one of them leaves; and a
//! node whose own events stay under `max_events_per_second` stops its channels once the
//! tenant's events on every node reach it. Each node shares its figures every second.

mod gateway_common;
mod processes;
mod support;

use std::time::{Duration, Instant};

use gateway_common::{join_config, Client, Seen};
use processes::Node;
use realtime_testkit::redis::Redis;
use serde_json::json;
use support::{anon_token, socket_request};

/// Tries to open a socket on `node`: the HTTP status of a refused upgrade, `None` when open.
async fn upgrade_status(node: &Node) -> Option<u16> {
    let req = socket_request(node.addr, &anon_token(), "2.0.0");
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => None,
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => Some(res.status().as_u16()),
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

/// Waits until an upgrade on `node` is answered with `want`.
async fn until_upgrade(node: &Node, want: Option<u16>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = upgrade_status(node).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "upgrade answered {got:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn joined(node: &Node) -> Client {
    let mut c = node.client().await;
    c.join_ok("room", "1", join_config(json!({}))).await;
    c
}

#[tokio::test]
async fn connected_users_are_limited_across_nodes() {
    let redis = Redis::start();
    let url = redis.url();
    let vars = [
        ("REDIS_URL", url.as_str()),
        ("TENANT_MAX_CONCURRENT_USERS", "2"),
    ];
    let nodes = [
        Node::standalone(&vars),
        Node::standalone(&vars),
        Node::standalone(&vars),
    ];
    for n in &nodes {
        n.await_line("connected to Redis").await;
    }
    assert_eq!(upgrade_status(&nodes[2]).await, None);
    let a = joined(&nodes[0]).await;
    let _b = joined(&nodes[1]).await;
    // Two users elsewhere fill the tenant for the third node too.
    until_upgrade(&nodes[2], Some(429)).await;
    // And for the nodes that hold them (one local, one remote).
    assert_eq!(upgrade_status(&nodes[0]).await, Some(429));
    drop(a);
    until_upgrade(&nodes[2], None).await;
}

#[tokio::test]
async fn the_events_limit_counts_every_node() {
    let redis = Redis::start();
    let url = redis.url();
    // Per broadcast the publishing node counts 2 events (the publish and its local receiver)
    // and the other node 1: at 12 per second that is 24 and 12, under 30 each, 36 together.
    let vars = [
        ("REDIS_URL", url.as_str()),
        ("TENANT_MAX_EVENTS_PER_SECOND", "30"),
    ];
    let nodes = [Node::standalone(&vars), Node::standalone(&vars)];
    for n in &nodes {
        n.await_line("connected to Redis").await;
    }
    let mut publisher = joined(&nodes[0]).await;
    let mut local = joined(&nodes[0]).await;
    let mut remote = joined(&nodes[1]).await;
    let sending = tokio::spawn(async move {
        for n in 0..240 {
            publisher
                .push(
                    Some("1"),
                    Some(&n.to_string()),
                    "realtime:room",
                    "broadcast",
                    json!({"type": "broadcast", "event": "e", "payload": {"n": n}}),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(83)).await;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(25);
    let stopped = loop {
        assert!(
            Instant::now() < deadline,
            "the remote node never applied the limit"
        );
        match remote.next_within(500).await {
            Seen::Text(f) if f.to_string().contains("Too many messages per second") => break f,
            Seen::Closed(c) => panic!("closed {c:?}"),
            _ => {}
        }
    };
    eprintln!("remote channel stopped: {stopped}");
    // The publishing node applies it too, at its next delivery past its own bucket's end.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "the publishing node never applied the limit"
        );
        if let Seen::Text(f) = local.next_within(500).await {
            if f.to_string().contains("Too many messages per second") {
                break;
            }
        }
    }
    sending.abort();
}
