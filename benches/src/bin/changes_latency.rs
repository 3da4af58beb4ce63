//! Postgres Changes latency and throughput: rows inserted one by one into a published table
//! reach WebSocket subscribers through the `realtime` binary; the baseline is a raw logical
//! replication stream (`realtime_pg::replication`) receiving the same commits.
//!
//! Latency is measured from just before each single-row `INSERT` (autocommit) is sent until
//! the frame carrying it arrives, one row at a time. Throughput is S subscribers receiving B
//! rows inserted back to back.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt, TryStreamExt};
use realtime_benches::args::Args;
use realtime_benches::client::{self, Vsn, Ws};
use realtime_benches::db::{self, DbSettings};
use realtime_benches::rlimit::raise_nofile;
use realtime_benches::server::JWT_SECRET;
use realtime_benches::stats::{ms, ratio, Samples};
use realtime_benches::{entry, BenchError};
use realtime_pg::pgoutput::{self, LogicalMessage, TupleValue};
use realtime_pg::replication::ReplicationStream;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const USAGE: &str = "\
changes_latency [--rows R] [--subscribers S] [--burst B]
  Latency over R rows inserted one at a time (default 200) with one subscriber, then
  throughput of B rows inserted back to back (default 500) to S subscribers (default 100).
  The database is a fresh one on the realtime-testkit cluster, or the one named by
  BENCH_DB_HOST, BENCH_DB_PORT, BENCH_DB_NAME, BENCH_DB_USER, BENCH_DB_PASSWORD.
  Needs target/release/realtime (or REALTIME_BIN).";

const TOPIC: &str = "realtime:bench";
const HOST: &str = "realtime-dev.localhost";
const NOT_READY: &str = "postgres_changes: no delivery (pipeline not ready)";
/// Creating the server's replication slot waits for running transactions; be generous.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(60);
/// Longest wait for one row on one receiver.
const ROW_WAIT: Duration = Duration::from_secs(5);
/// A throughput receiver that hears nothing for this long has received everything it will.
const IDLE: Duration = Duration::from_secs(10);

/// Upper bound of a whole run, whatever hangs.
const OVERALL: Duration = Duration::from_secs(300);

/// A row id and when it arrived.
type Arrival = (i64, Instant);

fn main() -> ExitCode {
    entry::main("changes_latency", || async {
        tokio::time::timeout(OVERALL, run())
            .await
            .unwrap_or_else(|_| {
                Err(BenchError::Timeout(format!(
                    "the run took over {OVERALL:?}"
                )))
            })
    })
}

async fn run() -> Result<(), BenchError> {
    let args = Args::from_env(USAGE)?;
    let rows = args.number("rows", 200)?.max(1) as i64;
    let subscribers = args.number("subscribers", 100)?.max(1) as usize;
    let burst = args.number("burst", 500)?.max(1) as i64;
    raise_nofile(subscribers as u64 * 2 + 1024);

    let db = DbSettings::from_env_or_cluster().await?;
    let pg = db.connect().await?;
    let mut server = db::start_realtime(&db, &pg).await?;
    pg.batch_execute(
        "create table if not exists public.bench (id bigint primary key, body text);
         grant select on public.bench to anon, authenticated;
         alter publication supabase_realtime add table public.bench;",
    )
    .await?;

    let mut raw_rx = tokio::time::timeout(SUBSCRIBE_WAIT, raw_stream(&db))
        .await
        .map_err(|_| {
            BenchError::Timeout(format!(
                "the baseline replication slot was not ready within {SUBSCRIBE_WAIT:?}"
            ))
        })??;
    let token = client::token(JWT_SECRET, "authenticated")?;
    let addr = server.addr();
    let mut first = match subscribe(addr, &token).await {
        Ok(ws) => ws,
        Err(Subscribe::NotReady(why)) => {
            println!("{NOT_READY}: {why}");
            return Ok(());
        }
        Err(Subscribe::Failed(e)) => return Err(e),
    };
    let (ws_tx, mut ws_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(id) = next_change(&mut first, Duration::from_secs(3600)).await {
            if ws_tx.send((id, Instant::now())).is_err() {
                break;
            }
        }
    });

    // The test cluster runs with synchronous_commit=off, which holds WAL (and so the
    // walsender) back for up to wal_writer_delay; commits here flush as on a default server.
    pg.batch_execute("set synchronous_commit = on").await?;
    let insert = pg
        .prepare("insert into public.bench (id, body) values ($1, 'x')")
        .await?;
    let mut via_ws = Samples::new();
    let mut via_raw = Samples::new();
    for id in 1..=rows {
        let sent = Instant::now();
        pg.execute(&insert, &[&id]).await?;
        match wait_for(&mut ws_rx, id).await {
            Some(at) => via_ws.push(at - sent),
            None if id == 1 => {
                println!("{NOT_READY}: the first row did not arrive within {ROW_WAIT:?}");
                return Ok(());
            }
            None => {}
        }
        if let Some(at) = wait_for(&mut raw_rx, id).await {
            via_raw.push(at - sent);
        }
    }

    // Throughput: S more subscribers, B rows back to back.
    let token_ref = &token;
    let many: Vec<Ws> = stream::iter(0..subscribers)
        .map(|_| async move {
            subscribe(addr, token_ref).await.map_err(|e| match e {
                Subscribe::NotReady(why) => BenchError::Protocol(why),
                Subscribe::Failed(e) => e,
            })
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    let from = rows + 1;
    let to = rows + burst;
    let counters: Vec<_> = many
        .into_iter()
        .map(|ws| tokio::spawn(count_changes(ws, from, burst as usize)))
        .collect();
    let raw_counter = tokio::spawn(async move {
        let mut got = 0usize;
        let mut last = None;
        while got < burst as usize {
            match tokio::time::timeout(IDLE, raw_rx.recv()).await {
                Ok(Some((id, at))) if id >= from => {
                    got += 1;
                    last = Some(at);
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        (got, last)
    });
    let start = Instant::now();
    for id in from..=to {
        pg.execute(&insert, &[&id]).await?;
    }
    let inserted_in = start.elapsed();
    let mut events = 0usize;
    let mut last_ws = start;
    let mut complete = 0usize;
    for c in counters {
        let (got, last) = c
            .await
            .map_err(|e| BenchError::Setup(format!("subscriber task: {e}")))?;
        events += got;
        if got == burst as usize {
            complete += 1;
        }
        if let Some(at) = last {
            last_ws = last_ws.max(at);
        }
    }
    let (raw_got, raw_last) = raw_counter
        .await
        .map_err(|e| BenchError::Setup(format!("replication task: {e}")))?;

    let per_sec = |n: usize, until: Instant| {
        let secs = (until - start).as_secs_f64();
        if n > 0 && secs > 0.0 {
            n as f64 / secs
        } else {
            f64::NAN
        }
    };
    let ws_rows = per_sec(events / subscribers, last_ws);
    let ws_events = per_sec(events, last_ws);
    let raw_rows = per_sec(raw_got, raw_last.unwrap_or(start));

    println!(
        "changes_latency: insert (autocommit, one row) -> frame; {rows} rows one at a time, then {burst} rows back to back to {subscribers} subscribers"
    );
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>9}",
        "latency", "p50 ms", "p99 ms", "max ms", "received"
    );
    let lat_row = |name: &str, s: &mut Samples| {
        let p = [s.percentile_ms(50.0), s.percentile_ms(99.0)];
        println!(
            "{:<34} {:>8} {:>8} {:>8} {:>9}",
            name,
            ms(p[0]),
            ms(p[1]),
            ms(s.percentile_ms(100.0)),
            format!("{}/{rows}", s.len())
        );
        p
    };
    let a = lat_row("realtime postgres_changes (WS)", &mut via_ws);
    let b = lat_row("baseline raw replication stream", &mut via_raw);
    println!(
        "{:<34} {:>8} {:>8}",
        "realtime/baseline",
        ratio(a[0], b[0]),
        ratio(a[1], b[1])
    );
    println!(
        "{:<34} {:>10} {:>12} {:>14}",
        "throughput", "rows/s", "events/s", "complete"
    );
    println!(
        "{:<34} {:>10.0} {:>12.0} {:>14}",
        "realtime postgres_changes (WS)",
        ws_rows,
        ws_events,
        format!("{complete}/{subscribers} subs")
    );
    println!(
        "{:<34} {:>10.0} {:>12.0} {:>14}",
        "baseline raw replication stream",
        raw_rows,
        raw_rows,
        format!("{raw_got}/{burst} rows")
    );
    println!(
        "{:<34} {:>10.0} {:>12} {:>14}",
        "inserts alone",
        burst as f64 / inserted_in.as_secs_f64(),
        "",
        ""
    );
    println!(
        "{:<34} {:>10}",
        "realtime/baseline",
        ratio(ws_rows, raw_rows)
    );
    server.stop();
    Ok(())
}

/// Why a subscriber could not be set up.
enum Subscribe {
    /// The pipeline did not confirm the subscription.
    NotReady(String),
    /// The socket or join failed.
    Failed(BenchError),
}

impl From<BenchError> for Subscribe {
    fn from(e: BenchError) -> Self {
        Subscribe::Failed(e)
    }
}

/// A vsn 2.0.0 socket joined to [`TOPIC`] with a `*` binding on `public.bench`, once the
/// server said "Subscribed to PostgreSQL".
async fn subscribe(addr: std::net::SocketAddr, token: &str) -> Result<Ws, Subscribe> {
    let mut ws = client::connect(&client::socket_url(addr, token, Vsn::V2), HOST).await?;
    client::join(
        &mut ws,
        Vsn::V2,
        TOPIC,
        "1",
        client::join_payload(json!([{"event": "*", "schema": "public", "table": "bench"}])),
        Duration::from_secs(30),
    )
    .await?;
    match client::await_subscribed(&mut ws, Instant::now() + SUBSCRIBE_WAIT).await? {
        Ok(()) => Ok(ws),
        Err(text) => Err(Subscribe::NotReady(text)),
    }
}

/// The id of the next `postgres_changes` row within `limit`, skipping other frames.
async fn next_change(ws: &mut Ws, limit: Duration) -> Option<i64> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = client::next_json(ws, left).await.ok()??;
        if client::event(&frame) == "postgres_changes" {
            if let Some(id) = change_id(client::payload(&frame)) {
                return Some(id);
            }
        }
    }
}

fn change_id(payload: &Value) -> Option<i64> {
    let record = &payload["data"]["record"];
    record["id"]
        .as_i64()
        .or_else(|| record["id"].as_str().and_then(|s| s.parse().ok()))
}

/// Counts rows with id ≥ `from` until `want` arrived or the socket went quiet.
async fn count_changes(mut ws: Ws, from: i64, want: usize) -> (usize, Option<Instant>) {
    let mut got = 0;
    let mut last = None;
    while got < want {
        match next_change(&mut ws, IDLE).await {
            Some(id) if id >= from => {
                got += 1;
                last = Some(Instant::now());
            }
            Some(_) => {}
            None => break,
        }
    }
    (got, last)
}

/// Waits for `id` on `rx`, dropping earlier ids.
async fn wait_for(rx: &mut mpsc::UnboundedReceiver<Arrival>, id: i64) -> Option<Instant> {
    let deadline = tokio::time::Instant::now() + ROW_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((got, at))) if got == id => return Some(at),
            Ok(Some((got, _))) if got < id => continue,
            // A later id means this one was skipped; keep it out of the figures.
            Ok(Some(_)) | Ok(None) | Err(_) => return None,
        }
    }
}

/// The baseline: a temporary slot on the publication, streamed by `realtime_pg`; every
/// inserted row's first column is sent with its arrival time.
async fn raw_stream(db: &DbSettings) -> Result<mpsc::UnboundedReceiver<Arrival>, BenchError> {
    let mut session = ReplicationStream::connect(&db.replication_options()).await?;
    let slot = format!("bench_raw_{}", std::process::id());
    let start = session.create_slot(&slot, true).await?;
    let mut logical = session.start(&slot, start, "supabase_realtime").await?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(x)) = logical.next().await {
            match pgoutput::decode(&x.data) {
                Ok(LogicalMessage::Insert { new, .. }) => {
                    let id = match new.first() {
                        Some(TupleValue::Text(b)) => {
                            std::str::from_utf8(b).ok().and_then(|s| s.parse().ok())
                        }
                        _ => None,
                    };
                    if let Some(id) = id {
                        if tx.send((id, Instant::now())).is_err() {
                            break;
                        }
                    }
                }
                Ok(LogicalMessage::Commit { end_lsn, .. }) => logical.confirm(end_lsn),
                _ => {}
            }
        }
    });
    Ok(rx)
}
