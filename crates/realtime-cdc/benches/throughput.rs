//! Postgres Changes throughput against the test cluster: how fast committed rows reach the
//! channels' sinks, for a few fan-out shapes. Prints figures; run with
//! `cargo bench -p realtime-cdc --bench throughput`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use realtime_cdc::CdcEvent;
use serde_json::json;

/// Receives `n` changes on every channel; returns the elapsed time since `start`.
async fn drain(channels: &mut [Channel], n: usize, start: Instant) -> Duration {
    for ch in channels.iter_mut() {
        let mut got = 0;
        while got < n {
            match tokio::time::timeout(Duration::from_secs(120), ch.rx.recv()).await {
                Ok(Some(CdcEvent::Change { .. })) => got += 1,
                Ok(Some(CdcEvent::System(v))) => panic!("system message during the run: {v}"),
                _ => panic!("only {got} of {n} changes arrived"),
            }
        }
    }
    start.elapsed()
}

fn report(name: &str, rows: usize, channels: usize, took: Duration) {
    let secs = took.as_secs_f64();
    println!(
        "{name:<44} {rows:>6} rows x {channels:>4} channels: {:>8.1} ms, {:>9.0} rows/s, {:>10.0} events/s",
        secs * 1000.0,
        rows as f64 / secs,
        (rows * channels) as f64 / secs
    );
}

async fn scenario_per_row(
    name: &str,
    setup: &str,
    claims: Vec<serde_json::Value>,
    rows: usize,
    owner: &str,
) {
    let env = env(setup).await;
    let mut channels = Vec::new();
    for c in claims {
        channels.push(
            env.subscribe(
                c,
                vec![json!({"event": "INSERT", "schema": "public", "table": "notes"})],
            )
            .await,
        );
    }
    let start = Instant::now();
    for i in 1..=rows {
        env.exec(&format!(
            "insert into public.notes values ({i}, '{owner}', 'x')"
        ))
        .await;
    }
    let took = drain(&mut channels, rows, start).await;
    report(name, rows, channels.len(), took);
}

async fn scenario(
    name: &str,
    setup: &str,
    table: &str,
    claims: Vec<serde_json::Value>,
    rows: usize,
    insert: &str,
) {
    let env = env(setup).await;
    let mut channels = Vec::new();
    for c in claims {
        channels.push(
            env.subscribe(
                c,
                vec![json!({"event": "INSERT", "schema": "public", "table": table})],
            )
            .await,
        );
    }
    let sql = insert.replace("{n}", &rows.to_string());
    let start = Instant::now();
    env.exec(&sql).await;
    let took = drain(&mut channels, rows, start).await;
    report(name, rows, channels.len(), took);
}

const NOTES: &str = "
create table public.notes (id int primary key, owner uuid, body text);
alter table public.notes enable row level security;
create policy p on public.notes for select to authenticated using (owner = auth.uid());
grant select on public.notes to authenticated;
alter publication supabase_realtime add table public.notes;";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let owner = "00000000-0000-0000-0000-00000000000a";
    scenario(
        "one channel, one transaction",
        "",
        "test",
        vec![anon()],
        5000,
        "insert into public.test select g, 'row ' || g, null from generate_series(1, {n}) g",
    )
    .await;
    scenario(
        "100 channels, same claims",
        "",
        "test",
        (0..100).map(|_| anon()).collect(),
        1000,
        "insert into public.test select g, 'row ' || g, null from generate_series(1, {n}) g",
    )
    .await;
    scenario(
        "RLS, 1 channel",
        NOTES,
        "notes",
        vec![json!({"role": "authenticated", "sub": owner})],
        2000,
        &format!(
            "insert into public.notes select g, '{owner}', 'x' from generate_series(1, {{n}}) g"
        ),
    )
    .await;
    scenario(
        "RLS, 20 channels with distinct claims",
        NOTES,
        "notes",
        (0..20)
            .map(|_| json!({"role": "authenticated", "sub": owner, "n": uuid::Uuid::new_v4().to_string()}))
            .collect(),
        500,
        &format!("insert into public.notes select g, '{owner}', 'x' from generate_series(1, {{n}}) g"),
    )
    .await;
    scenario_per_row(
        "RLS, 20 channels, one row per transaction",
        NOTES,
        (0..20)
            .map(|_| json!({"role": "authenticated", "sub": owner, "n": uuid::Uuid::new_v4().to_string()}))
            .collect(),
        300,
        owner,
    )
    .await;
}
