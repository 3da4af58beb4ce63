//! Two server processes on one database, as in a rolling deploy: the second waits as a
//! standby while the first streams (its channel is subscribed, not failed), the first keeps
//! the Postgres Changes slot however long the second runs, and once the first is killed with
//! SIGKILL, or shuts down on SIGTERM (leaving the slot to the standby rather than dropping
//! it), the second takes the slot over within seconds and its subscriber receives every
//! insert the first had not confirmed, exactly once and in commit order.

mod gateway_common;
mod processes;
mod support;

use std::time::{Duration, Instant};

use gateway_common::{event, Client, Seen};
use processes::Node;
use realtime_testkit::{Cluster, TestDb};
use serde_json::json;
use support::*;

/// Rows written, one per transaction; the first server is killed after `KILL_AFTER`.
const ROWS: i32 = 60;
const KILL_AFTER: i32 = 20;

/// A server over `db` with `extra` variables, the open-files limit left as it is.
fn server(db: &TestDb, extra: &[(&str, &str)]) -> Node {
    let mut vars = extra.to_vec();
    vars.push(("RLIMIT_NOFILE", ""));
    Node::on_db(db, &vars)
}

/// Joins `realtime:items` for inserts into `public.items` and waits for the subscription's
/// outcome; any system message but `Subscribed to PostgreSQL` fails.
async fn subscribe(c: &mut Client, within: Duration) {
    let binding = json!({"event": "INSERT", "schema": "public", "table": "items"});
    c.join_ok(
        "items",
        "1",
        json!({"config": {"postgres_changes": [binding]}}),
    )
    .await;
    let deadline = Instant::now() + within;
    loop {
        assert!(Instant::now() < deadline, "never subscribed");
        if let Seen::Text(f) = c.next_within(1000).await {
            if event(&f) == "system" {
                assert_eq!(f[4]["message"], "Subscribed to PostgreSQL", "{f}");
                return;
            }
        }
    }
}

/// Reads frames for `ms`, answering nothing but failing on any system message; returns
/// the ids of the inserts seen.
async fn drain(c: &mut Client, ms: u64) -> Vec<i32> {
    let until = Instant::now() + Duration::from_millis(ms);
    let mut ids = Vec::new();
    while Instant::now() < until {
        match c.next_within(100).await {
            Seen::Text(f) if event(&f) == "postgres_changes" => {
                ids.push(f[4]["data"]["record"]["id"].as_i64().unwrap() as i32)
            }
            Seen::Text(f) if event(&f) == "system" => panic!("system message {f}"),
            Seen::Closed(code) => panic!("socket closed ({code:?})"),
            _ => {}
        }
    }
    ids
}

async fn heartbeat(c: &mut Client) {
    c.push(None, Some("hb"), "phoenix", "heartbeat", json!({}))
        .await;
}

/// The Postgres Changes slot's holder and confirmed position (both `None` when it does not
/// exist; a slot always has a confirmed position).
async fn slot(db: &tokio_postgres::Client, name: &str) -> (Option<i32>, Option<String>) {
    let row = db
        .query_opt(
            "select active_pid, confirmed_flush_lsn::text from pg_replication_slots \
             where slot_name = $1",
            &[&name],
        )
        .await
        .unwrap();
    row.map_or((None, None), |r| (r.get(0), r.get(1)))
}

/// A WAL position `X/Y` as a number.
fn lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').expect("X/Y");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// How the slot changed hands, watched from just before the first server's end.
struct Takeover {
    /// The slot was missing at some point.
    vanished: bool,
    /// How long until another session held it.
    after: Option<Duration>,
    /// Its confirmed position then: the last one the first server reported, since the
    /// second reports its own only a status interval later.
    confirmed: Option<String>,
}

async fn watch_takeover(db: tokio_postgres::Client, name: String, first: Option<i32>) -> Takeover {
    let started = Instant::now();
    let mut vanished = false;
    while started.elapsed() < Duration::from_secs(15) {
        match slot(&db, &name).await {
            (None, None) => vanished = true,
            (Some(pid), confirmed) if Some(pid) != first => {
                return Takeover {
                    vanished,
                    after: Some(started.elapsed()),
                    confirmed,
                }
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Takeover {
        vanished,
        after: None,
        confirmed: None,
    }
}

/// How the first server goes away.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    /// SIGKILL: its connections close with the process.
    Kill,
    /// SIGTERM: a graceful shutdown, which would drop the slot if no standby waited.
    Terminate,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_waits_and_takes_over_when_the_first_is_killed() {
    takeover(End::Kill, Duration::from_secs(35)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_server_shutting_down_leaves_the_slot_to_the_second() {
    takeover(End::Terminate, Duration::from_secs(3)).await;
}

/// Both servers up, the first holding the slot for `hold` while the second runs, then the
/// first ends as `end` in the middle of a stream of inserts.
async fn takeover(end: End, hold: Duration) {
    let db = Cluster::shared().create_database().await;
    let slot_name = format!("supabase_realtime_replication_slot_{}", db.name);
    let first = server(&db, &[]);
    let sql = db.connect().await;
    wait_migrated(&sql).await;
    sql.batch_execute(
        "create table public.items (id int primary key, n int);
         grant select on public.items to anon, authenticated;
         alter publication supabase_realtime add table public.items;",
    )
    .await
    .unwrap();

    let mut a = first.client().await;
    subscribe(&mut a, Duration::from_secs(60)).await;
    let (first_pid, _) = slot(&sql, &slot_name).await;
    assert!(first_pid.is_some(), "the first server holds no slot");

    // The same tenant on a second server (its seed already done by the first).
    let second = server(&db, &[("SEED_SELF_HOST", "false")]);
    let mut b = second.client().await;
    // Subscribed while the first holds the slot: a standby is no failure.
    subscribe(&mut b, Duration::from_secs(30)).await;

    // The first keeps its slot however long the second runs.
    let until = Instant::now() + hold;
    while Instant::now() < until {
        heartbeat(&mut a).await;
        heartbeat(&mut b).await;
        assert_eq!(drain(&mut b, 1000).await, Vec::<i32>::new());
        assert_eq!(
            slot(&sql, &slot_name).await.0,
            first_pid,
            "the slot changed hands: {:?}",
            second.lines()
        );
    }
    // Inserts reach the first server's subscriber, not the standby's.
    sql.execute("insert into public.items values (0, 0)", &[])
        .await
        .unwrap();
    let seen_a = drain(&mut a, 1500).await;
    assert_eq!(seen_a, [0]);

    // Inserts around the first server's end, each with the WAL position before its commit;
    // the end runs alongside, as it would in production.
    let mut written: Vec<(i32, String)> = Vec::new();
    let mut first = Some(first);
    let mut watcher = None;
    let mut stopper = None;
    for i in 1..=ROWS {
        let row = sql
            .query_one(
                "with w as (insert into public.items values ($1, $1) returning id) \
                 select pg_current_wal_insert_lsn()::text from w",
                &[&i],
            )
            .await
            .unwrap();
        written.push((i, row.get(0)));
        if i == KILL_AFTER {
            let mut p = first.take().unwrap();
            watcher = Some(tokio::spawn(watch_takeover(
                db.connect().await,
                slot_name.clone(),
                first_pid,
            )));
            stopper = Some(tokio::task::spawn_blocking(move || match end {
                End::Kill => {
                    p.kill();
                    p.lines()
                }
                End::Terminate => {
                    let (code, _, lines) = p.terminate();
                    assert_eq!(code, 0, "{lines:?}");
                    lines
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first_output = stopper.unwrap().await.unwrap();
    if end == End::Terminate {
        // Stopping on purpose, it left the slot for the standby instead of dropping it.
        assert!(
            first_output
                .iter()
                .any(|l| l.contains("left in place") && l.contains(&slot_name)),
            "{first_output:?}"
        );
    }
    let taken = watcher.unwrap().await.unwrap();
    assert!(
        !taken.vanished,
        "the slot was dropped though a standby waited"
    );
    let took = taken
        .after
        .unwrap_or_else(|| panic!("no takeover: {:?}", second.lines()));
    assert!(took < Duration::from_secs(5), "took over after {took:?}");
    // What the gone holder last reported; the second resumed from it.
    let confirmed = lsn(&taken.confirmed.expect("a confirmed position"));

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.last() != Some(&ROWS) && Instant::now() < deadline {
        heartbeat(&mut b).await;
        seen.extend(drain(&mut b, 1000).await);
    }
    seen.extend(drain(&mut b, 1500).await);
    // Every row the dead holder had not confirmed arrives once, in commit order; rows it had
    // confirmed were its own subscribers' and do not come again.
    let must: Vec<i32> = written
        .iter()
        .filter(|(_, at)| lsn(at) > confirmed)
        .map(|(i, _)| *i)
        .collect();
    assert!(must.contains(&(KILL_AFTER + 1)) && must.contains(&ROWS));
    let from = seen.first().copied().unwrap_or(ROWS + 1);
    assert!(
        from <= must[0],
        "missing rows before {from}: {seen:?} {must:?}"
    );
    assert_eq!(
        seen,
        (from..=ROWS).collect::<Vec<_>>(),
        "{:?}",
        second.lines()
    );
}
