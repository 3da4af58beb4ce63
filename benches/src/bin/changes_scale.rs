//! Postgres Changes at scale: S WebSocket subscribers, each on its own channel with an
//! `INSERT` binding on one table under row level security, while rows are inserted at a fixed
//! rate R/s for D seconds. Measures what reaches the subscribers through the `realtime`
//! binary: deliveries/s, insert→client latency, the backlog when the inserts stop and 10 s
//! later, deliveries never received, and the server's CPU and memory. The baseline is a raw
//! logical replication stream (`realtime_pg::replication`, temporary slot on the same
//! publication) reading the same inserts.
//!
//! Scenarios (each with a fresh table and a fresh server):
//! - `distinct-true`: every subscriber has its own token (own `sub`), policy `using (true)`:
//!   every row goes to every subscriber, checked once per distinct set of claims.
//! - `distinct-owner`: own tokens, policy `using (user_id = auth.uid())`; rows are owned by
//!   the subscribers in turn, so each row is for exactly one of them.
//! - `distinct-owner-filter`: as `distinct-owner`, each binding also filtered on
//!   `user_id=eq.<its sub>`.
//! - `shared`: every subscriber joins with the same token, policy `using (true)`.
//!
//! Latency is the client's clock when a frame arrives minus the client's clock written into
//! the row (`sent_us`, unix microseconds) just before its `INSERT` was sent: one clock, so it
//! spans the insert and its commit, decoding, the policy check and the WebSocket.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use realtime_benches::args::Args;
use realtime_benches::client::{self, Vsn, Ws};
use realtime_benches::db::{self, DbSettings};
use realtime_benches::rlimit::raise_nofile;
use realtime_benches::server::{cpu_seconds, status_kib, ServerProcess, JWT_SECRET};
use realtime_benches::stats::{ms, Samples};
use realtime_benches::{entry, BenchError};
use realtime_pg::pgoutput::{self, LogicalMessage, TupleValue};
use realtime_pg::replication::ReplicationStream;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const USAGE: &str = "\
changes_scale [--scenario all|distinct-true|distinct-owner|distinct-owner-filter|shared]
              [--subscribers S] [--rate R] [--seconds D] [--join-rate J] [--inserters C]
              [--idle I] [--drain-max M] [--timeout T]
  S subscribers (default 1000), each on its own channel with an INSERT binding, receive rows
  inserted at R rows/s (default per scenario: distinct-true 40, distinct-owner 500,
  distinct-owner-filter 2000, shared 100) for D seconds (default 10) by C connections
  (default one per 250 rows/s). Joins are paced at J per second (default 300). After the
  inserts, deliveries are awaited until none arrives for I seconds (default 10) or M seconds
  have passed (default 60). `all` (the default) runs every scenario in turn, each with a fresh
  table and server. The whole run stops after T seconds (default: enough for every scenario).
  The database is a fresh one on the realtime-testkit cluster, or the one named by
  BENCH_DB_HOST, BENCH_DB_PORT, BENCH_DB_NAME, BENCH_DB_USER, BENCH_DB_PASSWORD.
  Needs target/release/realtime (or REALTIME_BIN).";

const HOST: &str = "realtime-dev.localhost";
/// Creating the server's replication slot waits for running transactions; be generous.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(60);
/// Longest wait for the reply to a join.
const JOIN_REPLY_WAIT: Duration = Duration::from_secs(30);
/// The server closes sockets that say nothing for 60 s; realtime-js beats every 25 s.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(25);
/// When the second backlog figure is taken, after the inserts stop.
const BACKLOG_AFTER: Duration = Duration::from_secs(10);
/// The text every row carries besides its owner and clock.
const PAYLOAD: &str = "changes_scale payload";
/// Rows per second one inserting connection is given by default.
const ROWS_PER_INSERTER: u64 = 250;

/// One way of subscribing and of securing the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    DistinctTrue,
    DistinctOwner,
    DistinctOwnerFilter,
    Shared,
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Scenario::DistinctTrue,
        Scenario::DistinctOwner,
        Scenario::DistinctOwnerFilter,
        Scenario::Shared,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::DistinctTrue => "distinct-true",
            Scenario::DistinctOwner => "distinct-owner",
            Scenario::DistinctOwnerFilter => "distinct-owner-filter",
            Scenario::Shared => "shared",
        }
    }

    fn parse(s: &str) -> Result<Vec<Scenario>, BenchError> {
        if s == "all" {
            return Ok(Scenario::ALL.to_vec());
        }
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .map(|sc| vec![sc])
            .ok_or_else(|| BenchError::Setup(format!("unknown scenario `{s}`\n{USAGE}")))
    }

    fn default_rate(self) -> u64 {
        match self {
            Scenario::DistinctTrue => 40,
            Scenario::DistinctOwner => 500,
            Scenario::DistinctOwnerFilter => 2000,
            Scenario::Shared => 100,
        }
    }

    /// The table of this scenario.
    fn table(self) -> String {
        format!("scale_{}", self.name().replace('-', "_"))
    }

    /// The `using` expression of the select policy.
    fn policy(self) -> &'static str {
        match self {
            Scenario::DistinctTrue | Scenario::Shared => "true",
            Scenario::DistinctOwner | Scenario::DistinctOwnerFilter => "user_id = auth.uid()",
        }
    }

    /// Whether each row is for its owner only.
    fn owned(self) -> bool {
        matches!(
            self,
            Scenario::DistinctOwner | Scenario::DistinctOwnerFilter
        )
    }

    /// The `postgres_changes` bindings of subscriber `sub`.
    fn bindings(self, table: &str, sub: &str) -> Value {
        let mut b = json!({"event": "INSERT", "schema": "public", "table": table});
        if self == Scenario::DistinctOwnerFilter {
            b["filter"] = json!(format!("user_id=eq.{sub}"));
        }
        json!([b])
    }
}

/// The flags.
struct Settings {
    subscribers: usize,
    rate: Option<u64>,
    seconds: u64,
    join_rate: u64,
    inserters: Option<u64>,
    idle: Duration,
    drain_max: Duration,
}

fn main() -> ExitCode {
    entry::main("changes_scale", run)
}

async fn run() -> Result<(), BenchError> {
    let args = Args::from_env(USAGE)?;
    let scenarios = Scenario::parse(args.text("scenario").unwrap_or("all"))?;
    let settings = Settings {
        subscribers: args.number("subscribers", 1000)?.max(1) as usize,
        rate: args.number("rate", 0).map(|r| (r > 0).then_some(r))?,
        seconds: args.number("seconds", 10)?.max(1),
        join_rate: args.number("join-rate", 300)?.max(1),
        inserters: args.number("inserters", 0).map(|c| (c > 0).then_some(c))?,
        idle: Duration::from_secs(args.number("idle", 10)?.max(1)),
        drain_max: Duration::from_secs(args.number("drain-max", 60)?.max(1)),
    };
    // Per scenario: server start, paced joins and their confirmation, inserts, drain, stop.
    let per_scenario = 120
        + settings.subscribers as u64 / settings.join_rate
        + SUBSCRIBE_WAIT.as_secs()
        + settings.seconds
        + settings.drain_max.as_secs();
    let overall = Duration::from_secs(
        args.number("timeout", per_scenario * scenarios.len() as u64)?
            .max(1),
    );
    tokio::time::timeout(overall, run_all(&settings, &scenarios))
        .await
        .unwrap_or_else(|_| {
            Err(BenchError::Timeout(format!(
                "the run took over {overall:?}"
            )))
        })
}

async fn run_all(settings: &Settings, scenarios: &[Scenario]) -> Result<(), BenchError> {
    raise_nofile(settings.subscribers as u64 * 2 + 1024);
    let db = DbSettings::from_env_or_cluster().await?;
    let pg = db.connect().await?;
    ensure_auth_uid(&pg).await?;
    let mut failed = Vec::new();
    for &sc in scenarios {
        if let Err(e) = scenario(&db, &pg, settings, sc).await {
            println!("changes_scale {}: failed: {e}", sc.name());
            failed.push(sc.name());
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(BenchError::Setup(format!(
            "scenarios failed: {}",
            failed.join(", ")
        )))
    }
}

/// `auth.uid()` as a Supabase database defines it, when the database lacks it.
async fn ensure_auth_uid(pg: &tokio_postgres::Client) -> Result<(), BenchError> {
    let row = pg
        .query_one("select to_regprocedure('auth.uid()') is not null", &[])
        .await?;
    if row.get::<_, bool>(0) {
        return Ok(());
    }
    pg.batch_execute(
        "create schema if not exists auth;
         grant usage on schema auth to anon, authenticated, service_role;
         create or replace function auth.uid() returns uuid language sql stable as $$
           select coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid $$;
         grant execute on function auth.uid() to anon, authenticated, service_role;",
    )
    .await?;
    Ok(())
}

/// The `sub` of subscriber `i`: a distinct, well-formed uuid.
fn sub_of(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

/// Microseconds since the epoch on this machine's clock.
fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One scenario on a fresh table and a fresh server; prints its figures.
async fn scenario(
    db: &DbSettings,
    pg: &tokio_postgres::Client,
    settings: &Settings,
    sc: Scenario,
) -> Result<(), BenchError> {
    let table = sc.table();
    pg.batch_execute(&format!(
        "drop table if exists public.{table};
         create table public.{table} (id bigserial primary key, user_id uuid not null,
                                      sent_us bigint not null, payload text not null);
         grant select on public.{table} to authenticated;
         alter table public.{table} enable row level security;
         create policy scale_select on public.{table} for select to authenticated
           using ({policy});
         alter publication supabase_realtime add table public.{table};",
        policy = sc.policy()
    ))
    .await?;

    let mut server = db::start_realtime(db, pg).await?;

    let outcome = measure(db, &server, settings, sc, &table).await;
    if outcome.is_err() {
        let log = server.keep_log().display().to_string();
        println!("changes_scale {}: server log kept at {log}", sc.name());
    }
    server.stop();
    drop_server_slots(pg).await?;
    pg.batch_execute(&format!("drop table if exists public.{table}"))
        .await?;
    outcome
}

/// Drops the server's replication slot once its walsender is gone, so that the next scenario's
/// server starts from a new slot instead of replaying this one's changes.
async fn drop_server_slots(pg: &tokio_postgres::Client) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        pg.execute(
            "select pg_drop_replication_slot(slot_name) from pg_replication_slots
              where database = current_database() and slot_name like 'supabase_realtime%'
                and not active",
            &[],
        )
        .await?;
        let left: i64 = pg
            .query_one(
                "select count(*) from pg_replication_slots
                  where database = current_database() and slot_name like 'supabase_realtime%'",
                &[],
            )
            .await?
            .get(0);
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Timeout(
                "the server's replication slot stayed active 20 s after it stopped".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Counters every subscriber adds to as frames arrive.
#[derive(Default)]
struct Counters {
    /// Rows received, over all subscribers.
    received: AtomicU64,
    /// `postgres_changes` frames carrying an error instead of a row.
    errors: AtomicU64,
    /// Unix microseconds of the latest row received.
    last_us: AtomicU64,
}

/// How the setup of one subscriber ended.
enum Setup {
    /// Subscribed to PostgreSQL.
    Ready(usize),
    /// Why it could not subscribe.
    Failed(String),
}

/// What one subscriber saw after it subscribed.
#[derive(Default)]
struct Outcome {
    received: u64,
    latencies_us: Vec<u64>,
    /// The socket ended before the run did.
    closed: bool,
}

/// One subscriber: connect, join, wait for "Subscribed to PostgreSQL", report, then read
/// rows until `stop`.
async fn subscriber(
    addr: SocketAddr,
    index: usize,
    token: Arc<str>,
    bindings: Value,
    setup: mpsc::UnboundedSender<Setup>,
    mut stop: watch::Receiver<bool>,
    counters: Arc<Counters>,
) -> Outcome {
    let mut ws = match subscribe(addr, index, &token, bindings).await {
        Ok(ws) => ws,
        Err(why) => {
            let _ = setup.send(Setup::Failed(why));
            return Outcome::default();
        }
    };
    let _ = setup.send(Setup::Ready(index));
    drop(setup);
    let mut out = Outcome::default();
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    let mut heartbeat_ref = 1u64;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = heartbeat.tick() => {
                heartbeat_ref += 1;
                let beat = client::push_frame(
                    Vsn::V2,
                    None,
                    Some(&heartbeat_ref.to_string()),
                    "phoenix",
                    "heartbeat",
                    json!({}),
                );
                if ws.send(beat).await.is_err() {
                    out.closed = true;
                    break;
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let now = unix_micros();
                    if let Some(sent) = sent_us(text.as_str()) {
                        out.received += 1;
                        out.latencies_us.push(now.saturating_sub(sent));
                        counters.received.fetch_add(1, Ordering::Relaxed);
                        counters.last_us.fetch_max(now, Ordering::Relaxed);
                    } else if text.as_str().contains("\"errors\":[") {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    out.closed = true;
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    out
}

/// A vsn 2.0.0 socket joined to `realtime:scale-<index>` with `token` (as `apikey` and as the
/// join's `access_token`), once the server said "Subscribed to PostgreSQL".
async fn subscribe(
    addr: SocketAddr,
    index: usize,
    token: &str,
    bindings: Value,
) -> Result<Ws, String> {
    let deadline = Instant::now() + SUBSCRIBE_WAIT;
    let topic = format!("realtime:scale-{index}");
    let url = client::socket_url(addr, token, Vsn::V2);
    let mut ws = client::connect(&url, HOST)
        .await
        .map_err(|e| e.to_string())?;
    let mut payload = client::join_payload(bindings);
    payload["access_token"] = json!(token);
    client::join(&mut ws, Vsn::V2, &topic, "1", payload, JOIN_REPLY_WAIT)
        .await
        .map_err(|e| e.to_string())?;
    client::await_subscribed(&mut ws, deadline.into_std())
        .await
        .map_err(|e| e.to_string())?
        .map(|()| ws)
}

/// The `sent_us` of the row in a `postgres_changes` frame, found in the text without parsing
/// the JSON (the record is jsonb text: `"sent_us": 1700000000000000`).
fn sent_us(frame: &str) -> Option<u64> {
    const KEY: &str = "\"sent_us\":";
    let at = frame.find(KEY)? + KEY.len();
    let rest = frame[at..].trim_start_matches([' ', '"']);
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Stops the baseline stream (and so drops its temporary slot) however the scenario ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The baseline's findings: insert→receive latencies and the latest arrival.
#[derive(Default)]
struct RawStats {
    latencies_us: Vec<u64>,
    last_us: u64,
}

/// The baseline: a temporary slot on the publication, streamed by `realtime_pg`; every row
/// inserted into `table` is timed by its `sent_us`.
async fn raw_stream(
    db: &DbSettings,
    table: &str,
) -> Result<(JoinHandle<()>, Arc<Mutex<RawStats>>), BenchError> {
    let mut session = ReplicationStream::connect(&db.replication_options()).await?;
    let slot = format!("bench_scale_{}", std::process::id());
    let start = session.create_slot(&slot, true).await?;
    let mut logical = session.start(&slot, start, "supabase_realtime").await?;
    let stats = Arc::new(Mutex::new(RawStats::default()));
    let shared = stats.clone();
    let table = table.to_string();
    let task = tokio::spawn(async move {
        let mut table_oid = None;
        let mut sent_col = None;
        while let Ok(Some(x)) = logical.next().await {
            match pgoutput::decode(&x.data) {
                Ok(LogicalMessage::Relation(r)) if r.namespace == "public" && r.name == table => {
                    table_oid = Some(r.oid);
                    sent_col = r.columns.iter().position(|c| c.name == "sent_us");
                }
                Ok(LogicalMessage::Insert { relation, new }) if Some(relation) == table_oid => {
                    let now = unix_micros();
                    let sent = match sent_col.and_then(|i| new.get(i)) {
                        Some(TupleValue::Text(b)) => std::str::from_utf8(b)
                            .ok()
                            .and_then(|s| s.parse::<u64>().ok()),
                        _ => None,
                    };
                    if let (Some(sent), Ok(mut s)) = (sent, shared.lock()) {
                        s.latencies_us.push(now.saturating_sub(sent));
                        s.last_us = now;
                    }
                }
                Ok(LogicalMessage::Commit { end_lsn, .. }) => logical.confirm(end_lsn),
                _ => {}
            }
        }
    });
    Ok((task, stats))
}

/// What the inserting connections share: row `j` is inserted at `start + j / rate`, owned by
/// subscriber `j % owners.len()`.
#[derive(Clone)]
struct InsertPlan {
    table: String,
    owners: Arc<Vec<String>>,
    rows: u64,
    rate: u64,
    start: Instant,
}

/// Inserts rows `first`, `first + step`, … of `plan`, one per statement and commit; returns how
/// many it inserted.
async fn inserter(
    pg: tokio_postgres::Client,
    plan: InsertPlan,
    first: u64,
    step: u64,
) -> Result<u64, BenchError> {
    let insert = pg
        .prepare(&format!(
            "insert into public.{} (user_id, sent_us, payload) values (($1::text)::uuid, $2, $3)",
            plan.table
        ))
        .await?;
    let mut done = 0;
    let mut j = first;
    while j < plan.rows {
        let offset = j as u128 * 1_000_000_000 / plan.rate as u128;
        tokio::time::sleep_until(plan.start + Duration::from_nanos(offset as u64)).await;
        let owner = &plan.owners[j as usize % plan.owners.len()];
        let sent = unix_micros() as i64;
        pg.execute(&insert, &[owner, &sent, &PAYLOAD]).await?;
        done += 1;
        j += step;
    }
    Ok(done)
}

/// Subscribes, inserts, drains and prints one scenario's figures.
async fn measure(
    db: &DbSettings,
    server: &ServerProcess,
    settings: &Settings,
    sc: Scenario,
    table: &str,
) -> Result<(), BenchError> {
    let subscribers = settings.subscribers;
    let rate = settings.rate.unwrap_or(sc.default_rate());
    let rows = rate * settings.seconds;
    let owners: Arc<Vec<String>> = Arc::new(match sc {
        Scenario::Shared => vec![sub_of(0); subscribers],
        _ => (0..subscribers).map(sub_of).collect(),
    });
    let shared_token: Arc<str> = client::token_for(JWT_SECRET, "authenticated", &owners[0])?.into();

    // Subscribers, joined at a steady pace.
    let counters = Arc::new(Counters::default());
    let (setup_tx, mut setup_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / settings.join_rate as f64));
    let joins_from = Instant::now();
    let mut tasks = Vec::with_capacity(subscribers);
    for (i, sub) in owners.iter().enumerate() {
        pace.tick().await;
        let token = match sc {
            Scenario::Shared => shared_token.clone(),
            _ => client::token_for(JWT_SECRET, "authenticated", sub)?.into(),
        };
        tasks.push(tokio::spawn(subscriber(
            server.addr(),
            i,
            token,
            sc.bindings(table, sub),
            setup_tx.clone(),
            stop_rx.clone(),
            counters.clone(),
        )));
    }
    drop(setup_tx);
    let mut ready = vec![false; subscribers];
    let mut ready_count = 0usize;
    let mut first_failure = None;
    let mut failures = 0usize;
    let setup_deadline = Instant::now() + SUBSCRIBE_WAIT + client::CONNECT_TIMEOUT;
    while ready_count + failures < subscribers {
        match tokio::time::timeout_at(setup_deadline, setup_rx.recv()).await {
            Ok(Some(Setup::Ready(i))) => {
                ready[i] = true;
                ready_count += 1;
            }
            Ok(Some(Setup::Failed(why))) => {
                failures += 1;
                first_failure.get_or_insert(why);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let joined_in = joins_from.elapsed();
    println!(
        "changes_scale {}: {subscribers} subscribers, {ready_count} subscribed in {:.1} s \
         (joins paced at {}/s){}",
        sc.name(),
        joined_in.as_secs_f64(),
        settings.join_rate,
        match &first_failure {
            Some(why) => format!("; {failures} failed, first: {why}"),
            None if ready_count < subscribers =>
                format!("; {} not confirmed in time", subscribers - ready_count),
            None => String::new(),
        }
    );
    if ready_count == 0 {
        println!("  postgres_changes: no delivery (no subscriber subscribed)");
        let _ = stop_tx.send(true);
        return Ok(());
    }

    let (raw_task, raw) = tokio::time::timeout(SUBSCRIBE_WAIT, raw_stream(db, table))
        .await
        .map_err(|_| {
            BenchError::Timeout(format!(
                "the baseline replication slot was not ready within {SUBSCRIBE_WAIT:?}"
            ))
        })??;
    let raw_task = AbortOnDrop(raw_task);

    // Inserting connections, each with synchronous_commit on: the test cluster runs with it
    // off, which would hold every walsender back for up to wal_writer_delay.
    let conns = settings
        .inserters
        .unwrap_or(rate.div_ceil(ROWS_PER_INSERTER))
        .clamp(1, rows.max(1));
    let mut sessions = Vec::new();
    for _ in 0..conns {
        let c = db.connect().await?;
        c.batch_execute("set synchronous_commit = on").await?;
        sessions.push(c);
    }

    let rss_joined = server.rss_kib()?;
    let server_cpu_from = cpu_seconds(server.pid())?;
    let bench_cpu_from = cpu_seconds(std::process::id())?;
    let start = Instant::now() + Duration::from_millis(20);
    let start_us = unix_micros() + 20_000;
    let plan = InsertPlan {
        table: table.to_string(),
        owners: owners.clone(),
        rows,
        rate,
        start,
    };
    let inserters: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(k, pg)| tokio::spawn(inserter(pg, plan.clone(), k as u64, conns)))
        .collect();
    let mut inserted = 0u64;
    for t in inserters {
        inserted += t
            .await
            .map_err(|e| BenchError::Setup(format!("inserter task: {e}")))??;
    }
    let stopped = Instant::now();
    let insert_secs = (stopped - start).as_secs_f64();

    // Every row is committed: what should arrive is known.
    let expected_of = |i: usize| -> u64 {
        if !ready[i] {
            0
        } else if sc.owned() {
            let s = subscribers as u64;
            inserted / s + u64::from((i as u64) < inserted % s)
        } else {
            inserted
        }
    };
    let expected: u64 = (0..subscribers).map(expected_of).sum();

    let received = || counters.received.load(Ordering::Relaxed);
    let at_stop = received();
    let raw_at_stop = raw.lock().map(|s| s.latencies_us.len()).unwrap_or(0);
    let mut after_backlog_wait = None;
    let mut last_seen = at_stop;
    let mut last_progress = Instant::now();
    let wait_end = loop {
        let now_received = received();
        let since_stop = stopped.elapsed();
        if since_stop >= BACKLOG_AFTER && after_backlog_wait.is_none() {
            after_backlog_wait = Some((now_received, since_stop));
        }
        if now_received >= expected {
            // Nothing is missing now, so nothing is at BACKLOG_AFTER either.
            after_backlog_wait.get_or_insert((now_received, BACKLOG_AFTER));
            break "all received";
        }
        if now_received != last_seen {
            last_seen = now_received;
            last_progress = Instant::now();
        }
        if last_progress.elapsed() >= settings.idle {
            after_backlog_wait.get_or_insert((now_received, since_stop));
            break "nothing arrived for the idle time";
        }
        if since_stop >= settings.drain_max {
            after_backlog_wait.get_or_insert((now_received, since_stop));
            break "cut off at --drain-max while rows were still arriving";
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ended = Instant::now();
    let server_cpu = cpu_seconds(server.pid())? - server_cpu_from;
    let bench_cpu = cpu_seconds(std::process::id())? - bench_cpu_from;
    let rss_end = server.rss_kib()?;
    let rss_peak = status_kib(server.pid(), "VmHWM")?;
    let final_received = received();
    let last_us = counters.last_us.load(Ordering::Relaxed);

    let _ = stop_tx.send(true);
    let mut latencies = Samples::new();
    let mut complete = 0usize;
    let mut closed = 0usize;
    for (i, t) in tasks.into_iter().enumerate() {
        let out = t
            .await
            .map_err(|e| BenchError::Setup(format!("subscriber task: {e}")))?;
        if ready[i] && out.received >= expected_of(i) {
            complete += 1;
        }
        if out.closed {
            closed += 1;
        }
        latencies.extend_micros(out.latencies_us);
    }
    drop(raw_task);
    let (mut raw_latencies, raw_last_us) = match raw.lock() {
        Ok(mut s) => {
            let mut samples = Samples::new();
            samples.extend_micros(std::mem::take(&mut s.latencies_us));
            (samples, s.last_us)
        }
        Err(_) => (Samples::new(), 0),
    };

    let per_sec = |n: u64, secs: f64| {
        if n > 0 && secs > 0.0 {
            n as f64 / secs
        } else {
            f64::NAN
        }
    };
    let drained_secs = last_us.saturating_sub(start_us) as f64 / 1e6;
    let raw_secs = raw_last_us.saturating_sub(start_us) as f64 / 1e6;
    let wall = (ended - start).as_secs_f64();
    let backlog = |got: u64| expected as i128 - got as i128;
    let mib = |kib: u64| kib as f64 / 1024.0;

    println!(
        "  {:<30} {inserted} in {insert_secs:.1} s ({:.0}/s asked {rate}/s, {conns} connections)",
        "rows inserted",
        per_sec(inserted, insert_secs),
    );
    println!(
        "  {:<30} {expected} ({})",
        "expected deliveries",
        if sc.owned() {
            "each row to its owner"
        } else {
            "each row to every subscriber"
        }
    );
    println!(
        "  {:<30} {final_received} ({complete}/{ready_count} subscribers complete, \
         {closed} sockets closed early, {} error frames)",
        "deliveries received",
        counters.errors.load(Ordering::Relaxed)
    );
    println!(
        "  {:<30} {:.0} over the insert window, {:.0} until the last arrival ({drained_secs:.1} s)",
        "deliveries/s",
        per_sec(at_stop, insert_secs),
        per_sec(final_received, drained_secs),
    );
    println!(
        "  {:<30} p50 {}  p99 {}  max {}",
        "insert->client latency (ms)",
        ms(latencies.percentile_ms(50.0)),
        ms(latencies.percentile_ms(99.0)),
        ms(latencies.percentile_ms(100.0)),
    );
    let (later, later_at) = after_backlog_wait.unwrap_or((final_received, ended - stopped));
    println!(
        "  {:<30} {} at insert stop, {} {:.0} s later",
        "backlog (expected - received)",
        backlog(at_stop),
        backlog(later),
        later_at.as_secs_f64()
    );
    println!(
        "  {:<30} {} (waited {:.1} s after the inserts: {wait_end}; idle {} s, at most {} s)",
        "lost (not received)",
        backlog(final_received).max(0),
        (ended - stopped).as_secs_f64(),
        settings.idle.as_secs(),
        settings.drain_max.as_secs()
    );
    println!(
        "  {:<30} {:.0}% over {wall:.1} s (bench process {:.0}%)",
        "server CPU",
        server_cpu / wall * 100.0,
        bench_cpu / wall * 100.0
    );
    println!(
        "  {:<30} {:.1} MiB after joins, {:.1} MiB at the end, peak {:.1} MiB",
        "server RSS",
        mib(rss_joined),
        mib(rss_end),
        mib(rss_peak)
    );
    let raw_got = raw_latencies.len() as u64;
    println!(
        "  {:<30} {raw_got}/{inserted} rows, {:.0} rows/s over the insert window \
         ({raw_at_stop} by then), {:.0} until the last; latency p50 {} p99 {} ms",
        "baseline raw replication",
        per_sec(raw_at_stop as u64, insert_secs),
        per_sec(raw_got, raw_secs),
        ms(raw_latencies.percentile_ms(50.0)),
        ms(raw_latencies.percentile_ms(99.0)),
    );
    Ok(())
}
