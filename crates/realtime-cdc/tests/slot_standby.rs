//! Several consumers on one slot: a live holder (another replication session streaming from
//! the slot and replying) is never terminated, however long a second pipeline waits; one that
//! stops replying is replaced after the lease; and when the holder's connection closes, the
//! waiting pipeline takes over within about two seconds and delivers every insert committed
//! meanwhile exactly once. Channels of the waiting pipeline are subscribed, not failed.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use realtime_cdc::tenant::PipelineState;
use realtime_cdc::{Cdc, CdcEvent, CdcOptions};
use realtime_pg::replication::{LogicalStream, ReplicationError, ReplicationStream};
use realtime_pg::{ConnectOptions, Lsn};
use realtime_testkit::{SUPERUSER, SUPERUSER_PASSWORD};
use serde_json::json;
use tokio::task::JoinHandle;

/// Short, so the tests see many leases go by.
const LEASE: Duration = Duration::from_secs(3);

/// A CDC service for the database, as another server instance would run it.
fn instance(env: &Env) -> Arc<Cdc> {
    Cdc::new(
        crypto(),
        CdcOptions {
            slot_name_suffix: Some(env.db.name.clone()),
            idle_shutdown: Duration::from_secs(5),
            slot_lease: LEASE,
            ..CdcOptions::default()
        },
    )
}

/// The fixture database and a CDC service with a short lease.
async fn standby_env() -> Env {
    let env = env("").await;
    let cdc = instance(&env);
    Env { cdc, ..env }
}

fn slot(env: &Env) -> String {
    realtime_cdc::slot::slot_name("supabase_realtime_replication_slot", Some(&env.db.name))
}

/// Another holder: the slot created and streamed from over a raw replication connection.
async fn raw_holder(env: &Env) -> LogicalStream {
    let mut opts = ConnectOptions::new(
        env.db.host(),
        env.db.port,
        &env.db.name,
        SUPERUSER,
        SUPERUSER_PASSWORD,
    );
    opts.application_name = "other_instance".into();
    let mut repl = ReplicationStream::connect(&opts).await.unwrap();
    repl.create_slot(&slot(env), false).await.unwrap();
    repl.start(&slot(env), Lsn::ZERO, "supabase_realtime")
        .await
        .unwrap()
}

/// A live holder: it reads and replies every 500 ms (well within the lease) but confirms
/// nothing it read, so whoever takes over gets it all again. Ends only with an error.
fn keep_streaming(mut stream: LogicalStream) -> JoinHandle<ReplicationError> {
    stream.set_status_interval(Duration::from_millis(500));
    tokio::spawn(async move {
        loop {
            match stream.next().await {
                Ok(Some(_)) => {}
                Ok(None) => return ReplicationError::ConnectionLost("stream ended".into()),
                Err(e) => return e,
            }
        }
    })
}

async fn active_pid(env: &Env) -> Option<i32> {
    env.sql
        .query_opt(
            "select active_pid from pg_replication_slots where slot_name = $1",
            &[&slot(env)],
        )
        .await
        .unwrap()
        .and_then(|r| r.get(0))
}

fn state(env: &Env) -> Option<PipelineState> {
    env.cdc.pipeline_state(&env.tenant.external_id)
}

async fn wait_state(env: &Env, want: PipelineState, within: Duration) -> Duration {
    let started = Instant::now();
    while state(env) != Some(want.clone()) {
        assert!(
            started.elapsed() < within,
            "state {:?}, not {want:?}",
            state(env)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

async fn insert(env: &Env, ids: std::ops::RangeInclusive<i32>) {
    for i in ids {
        env.sql
            .execute("insert into public.test values ($1, 'x', null)", &[&i])
            .await
            .unwrap();
    }
}

/// Reads inserts until `want` distinct ids arrived, then checks nothing else comes.
async fn inserted_ids(ch: &mut Channel, want: usize) -> Vec<i32> {
    let mut seen = Vec::new();
    while seen.len() < want {
        match ch.next_event().await {
            CdcEvent::Change { data, .. } => {
                let d: serde_json::Value = serde_json::from_str(data.get()).unwrap();
                seen.push(d["record"]["id"].as_i64().unwrap() as i32);
            }
            CdcEvent::System(v) => panic!("unexpected system message {v}"),
        }
    }
    ch.assert_quiet(1500).await;
    seen
}

fn entry() -> Vec<serde_json::Value> {
    vec![json!({"event": "INSERT", "schema": "public", "table": "test"})]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holder_is_never_terminated() {
    let env = standby_env().await;
    let holder = raw_holder(&env).await;
    let holder_pid = holder.backend_pid();
    let holder_task = keep_streaming(holder);
    // The channel is subscribed although the slot is busy: its pipeline is a standby.
    let mut ch = env.subscribe(anon(), entry()).await;
    assert_eq!(state(&env), Some(PipelineState::Standby));
    // Twenty leases, and longer than the old one-minute give-up after which holders were
    // terminated.
    let until = Instant::now() + Duration::from_secs(62);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!holder_task.is_finished(), "the live holder was terminated");
        assert_eq!(active_pid(&env).await, holder_pid);
        assert_eq!(state(&env), Some(PipelineState::Standby));
    }
    // Nothing reached the standby's channel meanwhile.
    insert(&env, 1..=3).await;
    ch.assert_quiet(500).await;
    holder_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_stops_replying_is_replaced_after_the_lease() {
    let env = standby_env().await;
    // Streams, but never reads or replies: a hung process whose connection stays open.
    let silent = raw_holder(&env).await;
    let silent_pid = silent.backend_pid();
    let mut ch = env.subscribe(anon(), entry()).await;
    let subscribed = Instant::now();
    // Committed while the hung holder has the slot: delivered after the takeover.
    insert(&env, 1..=5).await;
    wait_state(&env, PipelineState::Ready, LEASE + Duration::from_secs(6)).await;
    let took = subscribed.elapsed();
    // Not before the lease ran out.
    assert!(took >= LEASE - Duration::from_secs(1), "{took:?}");
    let now_held_by = active_pid(&env).await;
    assert!(now_held_by.is_some() && now_held_by != silent_pid);
    insert(&env, 6..=8).await;
    let seen = inserted_ids(&mut ch, 8).await;
    assert_eq!(seen, (1..=8).collect::<Vec<_>>());
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_holder_is_taken_over_within_seconds_losing_and_duplicating_nothing() {
    let env = standby_env().await;
    let holder = raw_holder(&env).await;
    let holder_task = keep_streaming(holder);
    let mut ch = env.subscribe(anon(), entry()).await;
    assert_eq!(state(&env), Some(PipelineState::Standby));
    // Long enough for a backing-off retry to have reached its longest delay.
    tokio::time::sleep(Duration::from_secs(8)).await;
    // Read by the holder, never confirmed by it.
    insert(&env, 1..=10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The holder's process dies: its connection closes.
    holder_task.abort();
    let _ = holder_task.await;
    let closed = Instant::now();
    let writer = {
        let db = env.db.clone();
        tokio::spawn(async move {
            let client = db.connect().await;
            for i in 11..=40 {
                client
                    .execute("insert into public.test values ($1, 'x', null)", &[&i])
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let took = wait_state(&env, PipelineState::Ready, Duration::from_secs(10)).await;
    assert!(
        took < Duration::from_millis(2500),
        "took over after {took:?}"
    );
    assert!(closed.elapsed() < Duration::from_secs(3));
    writer.await.unwrap();
    let seen = inserted_ids(&mut ch, 40).await;
    let unique: BTreeSet<i32> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates in {seen:?}");
    assert_eq!(seen, (1..=40).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_stops_leaves_the_slot_to_the_waiting_standby() {
    let env = standby_env().await;
    // Another instance streams for its own channel.
    let other = instance(&env);
    let mut theirs = env.try_subscribe_on(&other, anon(), entry()).await.unwrap();
    let mut ours = env.subscribe(anon(), entry()).await;
    assert_eq!(state(&env), Some(PipelineState::Standby));
    let their_pid = active_pid(&env).await;
    // Several leases with nothing to stream: the other pipeline's status updates keep its
    // lease, so the standby leaves it alone.
    tokio::time::sleep(3 * LEASE).await;
    assert_eq!(active_pid(&env).await, their_pid);
    assert_eq!(
        other.pipeline_state(&env.tenant.external_id),
        Some(PipelineState::Ready)
    );
    assert_eq!(state(&env), Some(PipelineState::Standby));
    insert(&env, 1..=3).await;
    assert_eq!(inserted_ids(&mut theirs, 3).await, [1, 2, 3]);
    // The other instance shuts down (a rolling deploy): it would drop its slot, but leaves it
    // to the standby, which resumes where it stopped.
    other.shutdown().await;
    insert(&env, 4..=8).await;
    wait_state(&env, PipelineState::Ready, Duration::from_secs(5)).await;
    insert(&env, 9..=10).await;
    assert_eq!(
        inserted_ids(&mut ours, 7).await,
        (4..=10).collect::<Vec<_>>()
    );
}
