//! A PostgreSQL restart loses nothing for connected WebSocket subscribers: rows committed
//! before, during and after a restart of the whole cluster reach a joined channel exactly once
//! and in commit order, for postgres_changes and for broadcasts sent from the database.
//!
//! Its own test binary because it restarts the cluster every test of the binary shares.

mod gateway_common;
mod support;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_common::{event, join_config, Client, Seen};
use realtime_testkit::{Cluster, TestDb};
use serde_json::{json, Value};
use support::{anon_token, TestServer};
use tokio_postgres::NoTls;

/// Rows written per test, one per transaction.
const ROWS: i32 = 150;

/// Creating a logical slot waits for every transaction running in the cluster.
const REPLICATION_START_WAIT: Duration = Duration::from_secs(60);

/// How long the tail may take after the last commit: the pipelines reconnect with backoff.
const TAIL_WAIT: Duration = Duration::from_secs(60);

/// The tests restart the cluster they share: one at a time.
static CLUSTER_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn server() -> TestServer {
    let db = Cluster::shared().create_database().await;
    let suffix = db.name.clone();
    TestServer::on_db(
        db,
        &[
            ("CHANNEL_ERROR_BACKOFF_MS", "50"),
            ("CONNECT_ERROR_BACKOFF_MS", "50"),
            ("SLOT_NAME_SUFFIX", suffix.as_str()),
        ],
    )
    .await
}

async fn connect(server: &TestServer) -> Client {
    let ws = server.socket(&anon_token(), "2.0.0").await;
    Client { ws, v2: true }
}

/// Waits until the seeded tenant's migrations created the `realtime` tables and partitions.
async fn wait_migrated(db: &tokio_postgres::Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = db
            .query_one(
                "select to_regclass('realtime.subscription') is not null \
                 and (select count(*) from pg_inherits \
                      where inhparent = to_regclass('realtime.messages')) > 0",
                &[],
            )
            .await
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(false);
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tenant migrations did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One superuser connection, or the error when the cluster is not accepting them.
async fn try_connect(db: &TestDb) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(&db.conn_str(), NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Writes `1..=ROWS`, one transaction each, through connection errors: after an error the
/// statement's commit status is unknown, so once reconnected `committed(i)` decides whether
/// it is written again. Returns the values known committed, in commit order; `progress`
/// counts them.
async fn write_through_restart<W, WF, C, CF>(
    db: TestDb,
    progress: Arc<AtomicUsize>,
    write: W,
    committed: C,
) -> Vec<i32>
where
    W: Fn(tokio_postgres::Client, i32) -> WF,
    WF: Future<Output = (tokio_postgres::Client, Result<(), tokio_postgres::Error>)>,
    C: Fn(tokio_postgres::Client, i32) -> CF,
    CF: Future<Output = (tokio_postgres::Client, Result<bool, tokio_postgres::Error>)>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn: Option<tokio_postgres::Client> = None;
    let mut done = Vec::new();
    for i in 1..=ROWS {
        let mut unknown = false;
        loop {
            assert!(Instant::now() < deadline, "writer stuck at {i}");
            let client = match conn.take() {
                Some(c) if !c.is_closed() => c,
                _ => match try_connect(&db).await {
                    Ok(c) => c,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if unknown {
                let (client, r) = committed(client, i).await;
                match r {
                    Ok(true) => {
                        conn = Some(client);
                        break;
                    }
                    Ok(false) => unknown = false,
                    Err(_) => continue,
                }
                conn = Some(client);
                continue;
            }
            let (client, r) = write(client, i).await;
            match r {
                Ok(()) => {
                    conn = Some(client);
                    break;
                }
                // Whether the commit happened is unknown until asked on a new connection.
                Err(_) => unknown = true,
            }
        }
        done.push(i);
        progress.store(done.len(), Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done
}

/// Waits until the writer is half way, then restarts the whole cluster.
async fn restart_midway(progress: &AtomicUsize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress.load(Ordering::SeqCst) < (ROWS / 2) as usize {
        assert!(Instant::now() < deadline, "writer made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::task::spawn_blocking(|| Cluster::shared().restart())
        .await
        .expect("cluster restarts");
}

/// Collects what `pick` extracts from the frames the client sees until `expected` is covered
/// (or the tail wait runs out), then briefly more so late duplicates show. Sends heartbeats
/// so the socket stays alive however long the pipeline takes.
async fn collect(
    c: &mut Client,
    expected: &[i32],
    pick: impl Fn(&Seen) -> Option<i32>,
) -> Vec<i32> {
    let want: HashSet<i32> = expected.iter().copied().collect();
    let mut got = Vec::new();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + TAIL_WAIT;
    let mut next_heartbeat = Instant::now();
    let mut settle_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if settle_until.is_some_and(|t| now >= t) || now >= deadline {
            return got;
        }
        if now >= next_heartbeat {
            c.push(None, Some("hb"), "phoenix", "heartbeat", json!({}))
                .await;
            next_heartbeat = now + Duration::from_secs(5);
        }
        let frame = c.next_within(200).await;
        if let Seen::Closed(code) = frame {
            panic!("socket closed ({code:?}) after {got:?}");
        }
        if let Some(i) = pick(&frame) {
            got.push(i);
            seen.insert(i);
            if settle_until.is_none() && want.is_subset(&seen) {
                settle_until = Some(Instant::now() + Duration::from_millis(1000));
            }
        }
    }
}

#[tokio::test]
async fn postgres_changes_survive_a_restart() {
    let _cluster = CLUSTER_LOCK.lock().await;
    let server = server().await;
    let db = server.db.clone().unwrap();
    let setup = db.connect().await;
    wait_migrated(&setup).await;
    setup
        .batch_execute(
            "create table public.items (id int primary key, n int);
             grant select, insert on public.items to anon, authenticated;
             alter publication supabase_realtime add table public.items;",
        )
        .await
        .unwrap();

    let mut c = connect(&server).await;
    let binding = json!({"event": "INSERT", "schema": "public", "table": "items"});
    c.join_ok(
        "room1",
        "1",
        json!({"config": {"postgres_changes": [binding]}}),
    )
    .await;
    let subscribed = Instant::now() + REPLICATION_START_WAIT;
    loop {
        assert!(Instant::now() < subscribed, "never subscribed");
        if let Seen::Text(f) = c.next_within(1000).await {
            if event(&f) == "system" {
                assert_eq!(f[4]["message"], "Subscribed to PostgreSQL", "{f}");
                break;
            }
        }
    }

    let progress = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(write_through_restart(
        db,
        progress.clone(),
        |client, i| async move {
            let r = client
                .execute("insert into public.items values ($1, $1)", &[&i])
                .await
                .map(|_| ());
            (client, r)
        },
        |client, i| async move {
            let r = client
                .query_one(
                    "select exists(select 1 from public.items where id = $1)",
                    &[&i],
                )
                .await
                .map(|row| row.get::<_, bool>(0));
            (client, r)
        },
    ));
    restart_midway(&progress).await;
    let committed = writer.await.unwrap();

    let got = collect(&mut c, &committed, |f| match f {
        Seen::Text(v) if event(v) == "postgres_changes" => {
            let record = &v[4]["data"]["record"];
            Some(record["id"].as_i64().expect("record id") as i32)
        }
        _ => None,
    })
    .await;
    assert_eq!(got, committed, "changes seen vs rows committed");
}

#[tokio::test]
async fn database_broadcasts_survive_a_restart() {
    let _cluster = CLUSTER_LOCK.lock().await;
    let server = server().await;
    let db = server.db.clone().unwrap();
    let setup = db.connect().await;
    wait_migrated(&setup).await;

    let mut c = connect(&server).await;
    c.join_ok("room2", "1", join_config(json!({}))).await;
    // The stream starts after the first join: send warm-up rows until one arrives.
    let deadline = Instant::now() + REPLICATION_START_WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "database broadcasts never arrived"
        );
        setup
            .execute(
                "select realtime.send('{}'::jsonb, 'warmup', 'room2', false)",
                &[],
            )
            .await
            .unwrap();
        if let Seen::Binary(_) = c.next_within(500).await {
            break;
        }
    }

    let progress = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(write_through_restart(
        db,
        progress.clone(),
        |client, i| async move {
            let r = client
                .execute(
                    "select realtime.send(jsonb_build_object('n', $1::int), 'ev', 'room2', false)",
                    &[&i],
                )
                .await
                .map(|_| ());
            (client, r)
        },
        |client, i| async move {
            let r = client
                .query_one(
                    "select exists(select 1 from realtime.messages \
                     where topic = 'room2' and event = 'ev' and (payload->>'n')::int = $1)",
                    &[&i],
                )
                .await
                .map(|row| row.get::<_, bool>(0));
            (client, r)
        },
    ));
    restart_midway(&progress).await;
    let committed = writer.await.unwrap();

    let got = collect(&mut c, &committed, |f| match f {
        Seen::Binary(b) => {
            let m = realtime_protocol::binary::decode_user_broadcast(b).expect("kind-4 frame");
            if m.event != "ev" {
                return None;
            }
            assert_eq!(m.topic, "realtime:room2");
            let body: Value = serde_json::from_slice(&m.payload).expect("JSON payload");
            Some(body["n"].as_i64().expect("n") as i32)
        }
        _ => None,
    })
    .await;
    assert_eq!(got, committed, "broadcasts seen vs messages committed");
}
