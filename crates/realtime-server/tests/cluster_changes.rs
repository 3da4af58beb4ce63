//! Postgres Changes and broadcast from the database across nodes, each a separate `realtime`
//! process on one database and one Redis: one node streams each of the tenant's slots and
//! relays what it reads; the others judge (RLS) and deliver it for their own subscribers.
//! Every committed insert reaches the subscribers of every node exactly once and in commit
//! order, also when the streaming node is killed with SIGKILL while inserts go on: another
//! node takes the slot over and resumes from it.

mod gateway_common;
mod processes;
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_common::{event, join_config, Client, Seen};
use processes::Node;
use realtime_testkit::redis::Redis;
use realtime_testkit::Cluster;
use serde_json::{json, Value};
use support::wait_migrated;

/// Creating a logical slot waits for every transaction running in the shared cluster.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(60);

async fn subscribed(node: &Node) -> Client {
    let mut c = node.client().await;
    let binding = json!({"event": "INSERT", "schema": "public", "table": "items"});
    c.join_ok(
        "room",
        "1",
        json!({"config": {"postgres_changes": [binding]}}),
    )
    .await;
    let deadline = Instant::now() + SUBSCRIBE_WAIT;
    loop {
        assert!(Instant::now() < deadline, "never subscribed");
        if let Seen::Text(f) = c.next_within(1000).await {
            if event(&f) == "system" {
                assert_eq!(f[4]["message"], "Subscribed to PostgreSQL", "{f}");
                return c;
            }
        }
    }
}

/// What `pick` takes from the frames a client receives, until it has `want` values and then
/// nothing new for a second, or `limit` passes; heartbeats keep the socket alive.
async fn collect<T: std::fmt::Debug>(
    c: &mut Client,
    want: usize,
    limit: Duration,
    pick: impl Fn(&Seen) -> Option<T>,
) -> Vec<T> {
    let mut got = Vec::new();
    let deadline = Instant::now() + limit;
    let mut beat = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    while Instant::now() < deadline {
        if beat.elapsed() > Duration::from_secs(5) {
            c.push(None, Some("hb"), "phoenix", "heartbeat", json!({}))
                .await;
            beat = Instant::now();
        }
        let seen = c.next_within(200).await;
        if let Seen::Closed(code) = seen {
            panic!("closed {code:?} after {got:?}");
        }
        match pick(&seen) {
            Some(v) => {
                got.push(v);
                quiet_since = None;
            }
            None if got.len() >= want => {
                let since = *quiet_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(1) {
                    break;
                }
            }
            None => {}
        }
    }
    got
}

/// The ids of the inserts a client receives (see [`collect`]).
async fn ids(c: &mut Client, want: usize, limit: Duration) -> Vec<i32> {
    collect(c, want, limit, |seen| match seen {
        Seen::Text(f) if event(f) == "postgres_changes" => {
            Some(f[4]["data"]["record"]["id"].as_i64().unwrap_or(-1) as i32)
        }
        _ => None,
    })
    .await
}

/// Which node streams a consumer's slot: the one that never logged waiting as a standby.
fn streaming(nodes: &[Node], consumer: &str) -> usize {
    let waits = format!("{consumer} waits as a standby");
    let standby: Vec<bool> = nodes
        .iter()
        .map(|n| n.lines().iter().any(|l| l.contains(&waits)))
        .collect();
    let owners: Vec<usize> = (0..nodes.len()).filter(|i| !standby[*i]).collect();
    assert_eq!(owners.len(), 1, "exactly one node streams: {standby:?}");
    owners[0]
}

#[tokio::test]
async fn changes_reach_every_node_once_and_survive_the_streaming_node_dying() {
    let redis = Redis::start();
    let db = Cluster::shared().create_database().await;
    let url = redis.url();
    let vars = [("REDIS_URL", url.as_str())];
    // One after the other: the first migrates the registry and seeds the tenant.
    let first = Node::on_db(&db, &vars);
    first.await_line("connected to Redis").await;
    let setup = db.connect().await;
    wait_migrated(&setup).await;
    setup
        .batch_execute(
            "create table public.items (id int primary key);
             grant select, insert on public.items to anon, authenticated;
             alter publication supabase_realtime add table public.items;",
        )
        .await
        .unwrap();
    let mut nodes = vec![first, Node::on_db(&db, &vars), Node::on_db(&db, &vars)];
    let mut clients = Vec::new();
    for n in &nodes {
        n.await_line("connected to Redis").await;
        clients.push(subscribed(n).await);
    }

    // Every node's subscriber gets every insert once, in commit order.
    for i in 1..=30 {
        setup
            .execute("insert into public.items values ($1)", &[&i])
            .await
            .unwrap();
    }
    let first_rows: Vec<i32> = (1..=30).collect();
    for c in clients.iter_mut() {
        assert_eq!(ids(c, 30, Duration::from_secs(30)).await, first_rows);
    }

    // Kill the streaming node while inserts go on.
    let owner = streaming(&nodes, "Postgres Changes");
    let next = Arc::new(AtomicI32::new(31));
    let writer = {
        let next = next.clone();
        let conn = db.connect().await;
        tokio::spawn(async move {
            for i in 31..=130 {
                conn.execute("insert into public.items values ($1)", &[&i])
                    .await
                    .unwrap();
                next.store(i + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    while next.load(Ordering::SeqCst) < 60 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nodes[owner].kill();
    writer.await.unwrap();

    let second_rows: Vec<i32> = (31..=130).collect();
    let mut took = BTreeMap::new();
    for (i, c) in clients.iter_mut().enumerate() {
        if i == owner {
            continue;
        }
        let started = Instant::now();
        let got = ids(c, second_rows.len(), Duration::from_secs(60)).await;
        took.insert(i, started.elapsed());
        assert_eq!(got, second_rows, "node {i}");
    }
    eprintln!("streaming node {owner} killed; the others got every insert: {took:?}");
    let took_over = nodes
        .iter()
        .enumerate()
        .filter(|(i, n)| {
            *i != owner
                && n.lines()
                    .iter()
                    .any(|l| l.contains("Postgres Changes took over the replication slot"))
        })
        .count();
    assert_eq!(took_over, 1, "one node took the slot over");
}

/// The `n` of each `ev` broadcast from the database a client receives (see [`collect`]).
async fn database_broadcasts(c: &mut Client, want: usize, limit: Duration) -> Vec<i64> {
    collect(c, want, limit, |seen| {
        let Seen::Binary(b) = seen else {
            return None;
        };
        let m = realtime_protocol::binary::decode_user_broadcast(b).expect("kind 4");
        (m.event == "ev").then(|| {
            let body: Value = serde_json::from_slice(&m.payload).expect("JSON");
            body["n"].as_i64().unwrap_or(-1)
        })
    })
    .await
}

#[tokio::test]
async fn broadcasts_from_the_database_reach_every_node_once_through_a_kill() {
    let redis = Redis::start();
    let db = Cluster::shared().create_database().await;
    let url = redis.url();
    let vars = [("REDIS_URL", url.as_str())];
    let first = Node::on_db(&db, &vars);
    first.await_line("connected to Redis").await;
    let setup = db.connect().await;
    wait_migrated(&setup).await;
    let mut nodes = vec![first, Node::on_db(&db, &vars), Node::on_db(&db, &vars)];
    let mut clients = Vec::new();
    for n in &nodes {
        n.await_line("connected to Redis").await;
        let mut c = n.client().await;
        c.join_ok("room", "1", join_config(json!({}))).await;
        clients.push(c);
    }
    // Each node's stream starts after its first join: warm up until every client hears one.
    let deadline = Instant::now() + SUBSCRIBE_WAIT;
    let mut heard = vec![false; clients.len()];
    while heard.iter().any(|h| !h) {
        assert!(
            Instant::now() < deadline,
            "database broadcasts never arrived: {heard:?}"
        );
        setup
            .execute(
                "select realtime.send('{}'::jsonb, 'warmup', 'room', false)",
                &[],
            )
            .await
            .unwrap();
        for (i, c) in clients.iter_mut().enumerate() {
            while let Seen::Binary(_) = c.next_within(300).await {
                heard[i] = true;
            }
        }
    }

    let owner = streaming(&nodes, "broadcast changes");
    let next = Arc::new(AtomicI32::new(1));
    let writer = {
        let next = next.clone();
        let conn = db.connect().await;
        tokio::spawn(async move {
            for i in 1..=80 {
                conn.execute(
                    "select realtime.send(jsonb_build_object('n', $1::int), 'ev', 'room', false)",
                    &[&i],
                )
                .await
                .unwrap();
                next.store(i + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    while next.load(Ordering::SeqCst) < 25 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nodes[owner].kill();
    writer.await.unwrap();
    let all: Vec<i64> = (1..=80).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        if i == owner {
            continue;
        }
        assert_eq!(
            database_broadcasts(c, all.len(), Duration::from_secs(60)).await,
            all,
            "node {i}"
        );
    }
}
