//! Several nodes on one Redis (`REDIS_URL`), each a separate `realtime` process: a broadcast
//! published on any node (socket, binary, REST) reaches the topic's subscribers on every node
//! exactly once and in order; a node listens in Redis only to topics it has subscribers for;
//! without Redis a node still delivers to its own sockets, and it joins the others once Redis
//! answers, at start or after an outage.

mod gateway_common;
mod processes;
mod support;

use gateway_common::{event, join_config, kind3, kind4, payload, Client, Seen};
use processes::{public_channel, Node};
use realtime_testkit::redis::Redis;
use serde_json::{json, Value};
use support::{anon_token, http_request};

const ROOM: &str = "realtime:room";

async fn joined(node: &Node, sub: &str) -> Client {
    let mut c = node.client().await;
    c.join_ok(sub, "1", join_config(json!({}))).await;
    c
}

async fn broadcast(c: &mut Client, n: usize) {
    c.push(
        Some("1"),
        Some(&n.to_string()),
        ROOM,
        "broadcast",
        json!({"type": "broadcast", "event": "msg", "payload": {"n": n}}),
    )
    .await;
}

/// The `n` of every broadcast that arrives until nothing more comes for `quiet_ms`.
async fn received(c: &mut Client, quiet_ms: u64) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        match c.next_within(quiet_ms).await {
            Seen::Text(v) if event(&v) == "broadcast" => {
                out.push(payload(&v)["payload"]["n"].as_u64().unwrap_or(u64::MAX))
            }
            Seen::Text(v) => panic!("unexpected frame {v}"),
            Seen::Binary(b) => panic!("unexpected binary frame {b:?}"),
            Seen::Closed(c) => panic!("closed: {c:?}"),
            Seen::Nothing => return out,
        }
    }
}

async fn rest_broadcast(node: &Node, body: Value) -> u16 {
    let token = anon_token();
    let auth = format!("Bearer {token}");
    let body = body.to_string();
    http_request(
        node.addr,
        "POST",
        "/api/broadcast",
        &[
            ("Host", "realtime-dev.supabase-realtime:4000"),
            ("Authorization", &auth),
            ("apikey", &token),
            ("Content-Type", "application/json"),
        ],
        Some(body.as_bytes()),
    )
    .await
    .status
}

async fn three_nodes(redis: &Redis) -> [Node; 3] {
    let url = redis.url();
    let nodes = [
        Node::standalone(&[("REDIS_URL", &url)]),
        Node::standalone(&[("REDIS_URL", &url)]),
        Node::standalone(&[("REDIS_URL", &url)]),
    ];
    for n in &nodes {
        n.await_line("connected to Redis").await;
    }
    nodes
}

#[tokio::test]
async fn a_broadcast_from_any_node_reaches_every_node_exactly_once_and_in_order() {
    let redis = Redis::start();
    let [n1, n2, n3] = three_nodes(&redis).await;
    let mut c1 = joined(&n1, "room").await;
    let mut c2 = joined(&n2, "room").await;
    let mut c3 = joined(&n3, "room").await;
    // A second subscriber on the publishing node is served directly, not through Redis.
    let mut c1b = joined(&n1, "room").await;
    redis.await_listeners(&public_channel("room"), 3).await;

    for n in 0..200 {
        broadcast(&mut c1, n).await;
    }
    let all: Vec<u64> = (0..200).collect();
    assert_eq!(received(&mut c2, 500).await, all);
    assert_eq!(received(&mut c3, 500).await, all);
    assert_eq!(received(&mut c1b, 500).await, all);
    // `self` is off: the publisher gets none, on any node.
    assert_eq!(received(&mut c1, 200).await, Vec::<u64>::new());

    broadcast(&mut c3, 1000).await;
    for c in [&mut c1, &mut c1b, &mut c2] {
        assert_eq!(received(c, 300).await, vec![1000]);
    }
    assert_eq!(received(&mut c3, 100).await, Vec::<u64>::new());

    // REST on a node whose sockets are not subscribed at all.
    let n4 = Node::standalone(&[("REDIS_URL", &redis.url())]);
    n4.await_line("connected to Redis").await;
    let status = rest_broadcast(
        &n4,
        json!({"messages": [{"topic": "room", "event": "msg", "payload": {"n": 7}}]}),
    )
    .await;
    assert_eq!(status, 202);
    for c in [&mut c1, &mut c1b, &mut c2, &mut c3] {
        assert_eq!(received(c, 300).await, vec![7]);
    }

    // A binary user broadcast keeps its bytes across nodes.
    c2.send_binary(kind3("1", "9", ROOM, "bin", 0, &[0, 1, 2, 255]))
        .await;
    let expected = kind4(ROOM, "bin", 0, &[0, 1, 2, 255]);
    for c in [&mut c1, &mut c3] {
        assert_eq!(c.recv_binary().await, expected);
    }
}

#[tokio::test]
async fn a_node_listens_only_to_topics_it_has_subscribers_for() {
    let redis = Redis::start();
    let [n1, n2, _n3] = three_nodes(&redis).await;
    let channel = public_channel("lonely");
    assert_eq!(redis.listeners(&channel), 0);
    let mut a = joined(&n1, "lonely").await;
    let b = joined(&n1, "lonely").await;
    let c = joined(&n2, "lonely").await;
    // One listener per node, however many subscribers it has.
    redis.await_listeners(&channel, 2).await;
    drop(c);
    redis.await_listeners(&channel, 1).await;
    a.push(
        Some("1"),
        Some("2"),
        "realtime:lonely",
        "phx_leave",
        json!({}),
    )
    .await;
    drop(b);
    redis.await_listeners(&channel, 0).await;
    // Other topics were never listened to.
    let all = redis
        .cli(&["PUBSUB", "CHANNELS", "realtime:*"])
        .unwrap_or_default();
    assert!(all.trim().is_empty(), "still listening: {all}");
}

#[tokio::test]
async fn without_redis_a_node_serves_its_own_sockets_and_joins_the_others_when_it_answers() {
    let mut redis = Redis::start();
    let url = redis.url();
    redis.kill();
    let n1 = Node::standalone(&[("REDIS_URL", &url)]);
    let n2 = Node::standalone(&[("REDIS_URL", &url)]);
    n1.await_line("cannot reach Redis").await;

    let mut a = joined(&n1, "room").await;
    let mut a2 = joined(&n1, "room").await;
    let mut b = joined(&n2, "room").await;
    broadcast(&mut a, 1).await;
    assert_eq!(received(&mut a2, 300).await, vec![1]);
    assert_eq!(received(&mut b, 300).await, Vec::<u64>::new());

    // Redis arrives: both nodes connect and listen to the topics they already serve.
    redis.resume();
    n1.await_line("connected to Redis").await;
    n2.await_line("connected to Redis").await;
    redis.await_listeners(&public_channel("room"), 2).await;
    broadcast(&mut a, 2).await;
    assert_eq!(received(&mut a2, 300).await, vec![2]);
    assert_eq!(received(&mut b, 300).await, vec![2]);

    // Redis dies: each node keeps serving its own sockets and says so once.
    redis.kill();
    n1.await_line("lost Redis").await;
    broadcast(&mut a, 3).await;
    assert_eq!(received(&mut a2, 300).await, vec![3]);
    assert_eq!(received(&mut b, 300).await, Vec::<u64>::new());

    // And recovers, listening again to every topic it serves.
    redis.resume();
    n1.await_line("Redis is back").await;
    n2.await_line("Redis is back").await;
    redis.await_listeners(&public_channel("room"), 2).await;
    broadcast(&mut b, 4).await;
    assert_eq!(received(&mut a, 300).await, vec![4]);
    assert_eq!(received(&mut a2, 300).await, vec![4]);
    let lost = n1
        .lines()
        .iter()
        .filter(|l| l.contains("lost Redis"))
        .count();
    assert_eq!(lost, 1, "one line per outage: {:#?}", n1.lines());
}

#[tokio::test]
async fn a_bad_redis_url_is_one_clear_error_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_realtime"))
        .env_clear()
        .env("API_JWT_SECRET", support::JWT_SECRET)
        .env("REDIS_URL", "http://user:hunter2@cache:6379")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("REDIS_URL must start with redis:// or rediss://"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn the_doctor_says_whether_redis_answers() {
    let doctor = |url: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_realtime"))
            .arg("doctor")
            .env_clear()
            .env("API_JWT_SECRET", support::JWT_SECRET)
            .env("REDIS_URL", url)
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let mut redis = Redis::start();
    let url = redis.url();
    let (code, text) = doctor(&url);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("answers (Redis"), "{text}");
    redis.kill();
    let (code, text) = doctor(&url);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("REDIS_URL: cannot reach redis://127.0.0.1:"),
        "{text}"
    );
}
