//! Presence across nodes, each a separate `realtime` process on one Redis: a member tracked on
//! any node shows in `presence_state` and the diffs of every node, leaves reach every node, the
//! members of a node killed with SIGKILL leave everywhere within 15 s, and those of a node
//! stopped with SIGTERM within a few seconds.

mod gateway_common;
mod processes;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use gateway_common::{event, join_config, payload, Client, Seen};
use processes::{public_channel, Node};
use realtime_testkit::redis::Redis;
use serde_json::{json, Value};

const LOBBY: &str = "realtime:lobby";

/// What a client knows of the topic's presence: key → `phx_ref`s, kept as supabase-js does
/// from `presence_state` and `presence_diff`.
#[derive(Default)]
struct View(BTreeMap<String, BTreeSet<String>>);

impl View {
    fn refs(entry: &Value) -> Vec<String> {
        entry["metas"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["phx_ref"].as_str().map(str::to_string))
            .collect()
    }

    fn apply(&mut self, frame: &Value) {
        let p = payload(frame);
        match event(frame) {
            "presence_state" => {
                self.0.clear();
                for (k, e) in p.as_object().into_iter().flatten() {
                    self.0.entry(k.clone()).or_default().extend(Self::refs(e));
                }
            }
            "presence_diff" => {
                for (k, e) in p["leaves"].as_object().into_iter().flatten() {
                    if let Some(set) = self.0.get_mut(k) {
                        for r in Self::refs(e) {
                            set.remove(&r);
                        }
                        if set.is_empty() {
                            self.0.remove(k);
                        }
                    }
                }
                for (k, e) in p["joins"].as_object().into_iter().flatten() {
                    self.0.entry(k.clone()).or_default().extend(Self::refs(e));
                }
            }
            _ => {}
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct Member {
    client: Client,
    view: View,
}

impl Member {
    async fn join(node: &Node, key: &str) -> Member {
        let mut client = node.client().await;
        client
            .join_ok(
                "lobby",
                "1",
                join_config(json!({"presence": {"key": key, "enabled": true}})),
            )
            .await;
        Member {
            client,
            view: View::default(),
        }
    }

    async fn track(&mut self, meta: Value) {
        self.client
            .push(
                Some("1"),
                Some("t"),
                LOBBY,
                "presence",
                json!({"type": "presence", "event": "track", "payload": meta}),
            )
            .await;
    }

    async fn untrack(&mut self) {
        self.client
            .push(
                Some("1"),
                Some("u"),
                LOBBY,
                "presence",
                json!({"type": "presence", "event": "untrack"}),
            )
            .await;
    }

    /// Reads frames until the view's keys are `keys`; fails after `limit`.
    async fn sees(&mut self, keys: &[&str], limit: Duration) -> Duration {
        let start = Instant::now();
        while self.view.keys() != keys {
            assert!(
                start.elapsed() < limit,
                "sees {:?}, expected {keys:?}",
                self.view.keys()
            );
            match self.client.next_within(200).await {
                Seen::Text(f) => self.view.apply(&f),
                Seen::Closed(c) => panic!("closed {c:?}"),
                _ => {}
            }
        }
        start.elapsed()
    }
}

async fn nodes(redis: &Redis, n: usize) -> Vec<Node> {
    let url = redis.url();
    let nodes: Vec<Node> = (0..n)
        .map(|_| Node::standalone(&[("REDIS_URL", &url)]))
        .collect();
    for node in &nodes {
        node.await_line("connected to Redis").await;
    }
    nodes
}

#[tokio::test]
async fn members_tracked_on_any_node_show_and_leave_on_every_node() {
    let redis = Redis::start();
    let nodes = nodes(&redis, 3).await;
    let mut alice = Member::join(&nodes[0], "alice").await;
    alice.track(json!({"name": "alice"})).await;
    alice.sees(&["alice"], Duration::from_secs(5)).await;

    // A member joining on another node learns of alice (in its state, or in a diff right
    // after), and alice learns of it.
    let mut bob = Member::join(&nodes[1], "bob").await;
    bob.track(json!({"name": "bob"})).await;
    bob.sees(&["alice", "bob"], Duration::from_secs(5)).await;
    alice.sees(&["alice", "bob"], Duration::from_secs(5)).await;

    // A third node's newcomer gets everyone; the one who only watches is not a member.
    let mut carol = Member::join(&nodes[2], "carol").await;
    carol.sees(&["alice", "bob"], Duration::from_secs(5)).await;
    redis.await_listeners(&public_channel("lobby"), 3).await;

    // An update keeps one meta per member everywhere.
    alice
        .track(json!({"name": "alice", "status": "away"}))
        .await;
    for m in [&mut bob, &mut carol] {
        m.sees(&["alice", "bob"], Duration::from_secs(5)).await;
        assert_eq!(m.view.0["alice"].len(), 1, "{:?}", m.view.0);
    }

    // A leave reaches every node.
    bob.untrack().await;
    alice.sees(&["alice"], Duration::from_secs(5)).await;
    carol.sees(&["alice"], Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_members_of_a_killed_node_leave_everywhere_within_15_s() {
    let redis = Redis::start();
    let mut nodes = nodes(&redis, 3).await;
    let mut alice = Member::join(&nodes[0], "alice").await;
    alice.track(json!({"name": "alice"})).await;
    let mut bob = Member::join(&nodes[1], "bob").await;
    bob.track(json!({"name": "bob"})).await;
    let mut dave = Member::join(&nodes[1], "dave").await;
    dave.track(json!({"name": "dave"})).await;
    let mut carol = Member::join(&nodes[2], "carol").await;
    for m in [&mut alice, &mut carol] {
        m.sees(&["alice", "bob", "dave"], Duration::from_secs(5))
            .await;
    }

    nodes[1].kill();
    let took_alice = alice.sees(&["alice"], Duration::from_secs(15)).await;
    let took_carol = carol.sees(&["alice"], Duration::from_secs(15)).await;
    eprintln!("killed node's members left after {took_alice:?} and {took_carol:?}");

    // A node starting later does not see the dead node's members either.
    let late = Node::standalone(&[("REDIS_URL", &redis.url())]);
    late.await_line("connected to Redis").await;
    let mut erin = Member::join(&late, "erin").await;
    erin.sees(&["alice"], Duration::from_secs(5)).await;
    erin.client.silent(500).await;
}

#[tokio::test]
async fn the_members_of_a_node_stopped_on_purpose_leave_everywhere_within_seconds() {
    let redis = Redis::start();
    let mut nodes = nodes(&redis, 2).await;
    let mut alice = Member::join(&nodes[0], "alice").await;
    alice.track(json!({"name": "alice"})).await;
    let mut bob = Member::join(&nodes[1], "bob").await;
    bob.track(json!({"name": "bob"})).await;
    alice.sees(&["alice", "bob"], Duration::from_secs(5)).await;
    let stopping = nodes.remove(1);
    let (code, _, _) = tokio::task::spawn_blocking(move || stopping.terminate())
        .await
        .unwrap();
    assert_eq!(code, 0);
    let took = alice.sees(&["alice"], Duration::from_secs(5)).await;
    eprintln!("a stopped node's member left after {took:?}");
}
