//! Soak: many sockets with presence under steady broadcast and presence churn for minutes,
//! printing the server's resident memory, deliveries, presence events, errors and sockets the
//! server closed over time, then a summary. Flat memory and nothing closed is the goal. Runs
//! against the `realtime` binary only (standalone); with two or more cores the server is pinned
//! to core 0 and this load generator to core 1.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use realtime_benches::args::Args;
use realtime_benches::client;
use realtime_benches::rlimit::raise_nofile;
use realtime_benches::server::{
    cpu_seconds, free_port, set_var, standalone_env, status_kib, ServerProcess, JWT_SECRET, TENANT,
};
use realtime_benches::soak::{self, Cmd, Shared};
use realtime_benches::stats::ms;
use realtime_benches::{cpu, entry, http, BenchError};
use tokio::sync::{mpsc, watch};

const USAGE: &str = "\
soak [--sockets N] [--seconds D] [--every E] [--rate R] [--churn C] [--topics T] [--rejoin-every K]
  N sockets (default 10000; even ones vsn 2.0.0, odd ones 1.0.0) spread over T topics
  `realtime:soak-<i % T>` (default 100), each joined with presence enabled (key = socket index)
  and tracking a payload; every socket heartbeats every 25 s and reads everything. For D
  seconds (default 600): R broadcasts/s in all (default 200), round robin over the topics, each
  sent by a member of its topic and stamped with its send time; C presence churn events/s
  (default 20): a random socket tracks a new payload, except every K-th event (default 10),
  which alternates between a random socket leaving its channel and joining again, and a random
  socket disconnecting and reconnecting (both track again once joined). A line every E seconds
  (default 30): elapsed, server RSS, deliveries/s and presence events/s received in the
  interval, errors and sockets closed by the server so far, server and bench CPU. Then a
  summary: RSS at start / after connect / peak / end / after every socket closed, deliveries,
  broadcast latency p50/p99, churn done, errors by kind. Needs target/release/realtime (or
  REALTIME_BIN).";

/// Concurrent connects (each held until its join is answered).
const CONNECT_CONCURRENCY: usize = 64;
/// Commands a socket may have waiting before the driver counts it as stuck.
const COMMAND_QUEUE: usize = 16;
/// Time for in-flight broadcasts to arrive after the last one is sent.
const DRAIN: Duration = Duration::from_secs(3);
/// Time for the server to drop closed sockets before its memory is read again.
const CLOSE_SETTLE: Duration = Duration::from_secs(5);

struct Plan {
    sockets: usize,
    seconds: u64,
    every: u64,
    rate: u64,
    churn: u64,
    topics: usize,
    rejoin_every: u64,
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() != Some(realtime_benches::baseline::ARG)
        && cpu::available() >= 2
    {
        cpu::pin_servers(0);
        cpu::pin_current_thread(1);
    }
    entry::main("soak", run)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn run() -> Result<(), BenchError> {
    let args = Args::from_env(USAGE)?;
    let plan = Plan {
        sockets: args.number("sockets", 10_000)?.max(2) as usize,
        seconds: args.number("seconds", 600)?,
        every: args.number("every", 30)?.max(1),
        rate: args.number("rate", 200)?,
        churn: args.number("churn", 20)?,
        topics: args.number("topics", 100)?.max(1) as usize,
        rejoin_every: args.number("rejoin-every", 10)?,
    };
    let want_files = plan.sockets as u64 + 1024;
    let limit = raise_nofile(want_files);
    if limit < want_files {
        return Err(BenchError::Setup(format!(
            "the open-files limit is {limit}, too low for {} sockets; raise it (ulimit -n) or pass a smaller --sockets",
            plan.sockets
        )));
    }

    let port = free_port()?;
    let mut vars = standalone_env(port);
    set_var(
        &mut vars,
        "RLIMIT_NOFILE",
        (plan.sockets as u64 * 2 + 4096).to_string(),
    );
    let mut server = ServerProcess::realtime(port, &vars)?;
    server
        .wait_http_ok("GET", "/healthcheck", &[], Duration::from_secs(30))
        .await?;
    raise_presence_limits(&server).await?;
    let outcome = soak(&plan, &server).await;
    if outcome.is_err() {
        let log = server.keep_log();
        eprintln!("soak: server log kept at {}", log.display());
    }
    server.stop();
    outcome
}

/// Raises the tenant's presence limits, which have no `TENANT_MAX_*` variable, through the
/// admin API: every limit is raised so the limiters never shape a figure.
async fn raise_presence_limits(server: &ServerProcess) -> Result<(), BenchError> {
    let token = client::token(JWT_SECRET, "service_role")?;
    let auth = format!("Bearer {token}");
    let body = serde_json::json!({"tenant": {
        "max_presence_events_per_second": 2_000_000_000,
        "max_client_presence_events_per_window": 1_000_000,
    }})
    .to_string();
    let status = http::send_json(
        server.addr(),
        "PATCH",
        &format!("/api/tenants/{TENANT}"),
        &[("Authorization", &auth)],
        &body,
    )
    .await?;
    if status != 200 {
        return Err(BenchError::Setup(format!(
            "PATCH /api/tenants/{TENANT} answered {status}"
        )));
    }
    Ok(())
}

/// Readings of the server and this process at one moment.
#[derive(Clone, Copy)]
struct Reading {
    at: Instant,
    rss_kib: u64,
    server_cpu: f64,
    own_cpu: f64,
    deliveries: u64,
    presence: u64,
}

fn read(server: &ServerProcess, shared: &Shared) -> Result<Reading, BenchError> {
    Ok(Reading {
        at: Instant::now(),
        rss_kib: server.rss_kib()?,
        server_cpu: cpu_seconds(server.pid())?,
        own_cpu: cpu_seconds(std::process::id())?,
        deliveries: shared.tally.deliveries.load(Ordering::Relaxed),
        presence: shared.tally.presence.load(Ordering::Relaxed),
    })
}

async fn soak(plan: &Plan, server: &ServerProcess) -> Result<(), BenchError> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_start = server.rss_kib()?;
    let token = client::token(JWT_SECRET, "authenticated")?;
    let shared = Arc::new(Shared::new(
        server.addr(),
        token,
        plan.sockets,
        plan.topics,
        CONNECT_CONCURRENCY,
    ));
    println!(
        "soak: {} sockets ({} vsn 2.0.0, {} vsn 1.0.0) over {} topics with presence; {} broadcasts/s, {} presence churn/s (one in {} a rejoin or a reconnect), {} s{}",
        plan.sockets,
        plan.sockets.div_ceil(2),
        plan.sockets / 2,
        plan.topics,
        plan.rate,
        plan.churn,
        plan.rejoin_every,
        plan.seconds,
        match cpu::server_cpu() {
            Some(c) => format!("; server pinned to core {c}, load generator to core 1"),
            None => String::new(),
        }
    );

    // Connect, join and track.
    let connect_start = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handles = Vec::with_capacity(plan.sockets);
    let mut tasks = Vec::with_capacity(plan.sockets);
    for i in 0..plan.sockets {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        handles.push(tx);
        tasks.push(tokio::spawn(soak::run(
            i,
            shared.clone(),
            rx,
            stop_rx.clone(),
        )));
    }
    let connect_limit = Duration::from_secs(60 + plan.sockets as u64 / 50);
    while (shared.tally.joined.load(Ordering::Relaxed) as usize) < plan.sockets {
        if connect_start.elapsed() > connect_limit {
            return Err(BenchError::Timeout(format!(
                "{} of {} sockets joined after {connect_limit:?}",
                shared.tally.joined.load(Ordering::Relaxed),
                plan.sockets
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_secs = connect_start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_connected = server.rss_kib()?;
    println!(
        "connected and joined in {connect_secs:.1} s; RSS {:.1} MiB before, {:.1} MiB after ({:.1} KiB per socket)",
        mib(rss_start),
        mib(rss_connected),
        rss_connected.saturating_sub(rss_start) as f64 / plan.sockets as f64
    );

    // Steady load.
    let handles = Arc::new(handles);
    let (load_stop_tx, load_stop_rx) = watch::channel(false);
    let publisher = tokio::spawn(publish(
        plan.rate,
        plan.sockets,
        plan.topics,
        handles.clone(),
        shared.clone(),
        load_stop_rx.clone(),
    ));
    let churner = tokio::spawn(churn(
        plan.churn,
        plan.rejoin_every,
        handles.clone(),
        shared.clone(),
        load_stop_rx,
    ));
    println!(
        "{:>8} {:>9} {:>12} {:>11} {:>7} {:>7} {:>11} {:>10}",
        "elapsed",
        "RSS MiB",
        "deliveries/s",
        "presence/s",
        "errors",
        "closed",
        "server CPU%",
        "bench CPU%"
    );
    let steady_start = Instant::now();
    let mut last = read(server, &shared)?;
    let mut peak_sampled = last.rss_kib;
    let mut next_line = steady_start + Duration::from_secs(plan.every);
    let end = steady_start + Duration::from_secs(plan.seconds);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1).min(end - now)).await;
        let r = read(server, &shared)?;
        peak_sampled = peak_sampled.max(r.rss_kib);
        if r.at >= next_line || r.at >= end {
            let secs = r.at.duration_since(last.at).as_secs_f64().max(1e-9);
            let tally = &shared.tally;
            println!(
                "{:>7.0}s {:>9.1} {:>12.0} {:>11.0} {:>7} {:>7} {:>11.0} {:>10.0}",
                r.at.duration_since(steady_start).as_secs_f64(),
                mib(r.rss_kib),
                (r.deliveries - last.deliveries) as f64 / secs,
                (r.presence - last.presence) as f64 / secs,
                tally.errors.load(Ordering::Relaxed),
                tally.closed.load(Ordering::Relaxed),
                (r.server_cpu - last.server_cpu) / secs * 100.0,
                (r.own_cpu - last.own_cpu) / secs * 100.0,
            );
            last = r;
            next_line += Duration::from_secs(plan.every);
        }
    }
    let _ = load_stop_tx.send(true);
    let (asked, publish_dropped) = publisher.await.unwrap_or((0, 0));
    let churned = churner.await.unwrap_or_default();
    tokio::time::sleep(DRAIN).await;
    let rss_end = server.rss_kib()?;
    let peak_hwm = status_kib(server.pid(), "VmHWM")?;

    // Close every socket.
    let _ = stop_tx.send(true);
    drop(handles);
    for t in tasks {
        let _ = t.await;
    }
    tokio::time::sleep(CLOSE_SETTLE).await;
    let rss_closed = server.rss_kib()?;

    let tally = &shared.tally;
    let steady_secs = plan.seconds.max(1) as f64;
    let deliveries = tally.deliveries.load(Ordering::Relaxed);
    println!("summary:");
    println!(
        "  RSS MiB: start {:.1}, after connect {:.1}, peak {:.1} (sampled every second: {:.1}), end {:.1}, after all sockets closed {:.1}",
        mib(rss_start),
        mib(rss_connected),
        mib(peak_hwm),
        mib(peak_sampled),
        mib(rss_end),
        mib(rss_closed)
    );
    println!(
        "  broadcasts: {} asked, {} sent ({} skipped between channels), {} deliveries of ~{} expected ({:.0}/s); latency p50 {} ms, p99 {} ms",
        asked,
        tally.sent.load(Ordering::Relaxed),
        tally.publish_skipped.load(Ordering::Relaxed),
        deliveries,
        tally.expected.load(Ordering::Relaxed),
        deliveries as f64 / steady_secs,
        ms(shared.latency.percentile_ms(50.0)),
        ms(shared.latency.percentile_ms(99.0)),
    );
    println!(
        "  presence: {} frames received; {} tracks sent, {} ok; {} rejoins and {} reconnects done ({} and {} asked)",
        tally.presence.load(Ordering::Relaxed),
        tally.tracks.load(Ordering::Relaxed),
        tally.tracks_ok.load(Ordering::Relaxed),
        tally.rejoins.load(Ordering::Relaxed),
        tally.reconnects.load(Ordering::Relaxed),
        churned.rejoins,
        churned.reconnects,
    );
    println!(
        "  closed by the server: {}; errors: {}{}",
        tally.closed.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        shared
            .errors_by_kind()
            .iter()
            .map(|(k, n)| format!("; {k}: {n}"))
            .collect::<String>()
    );
    let full = publish_dropped + churned.queue_full;
    if full > 0 {
        println!("  commands dropped on full socket queues: {full}");
    }
    Ok(())
}

/// Hands `Cmd` to socket `i`; false when its queue is full or gone.
fn command(handles: &[mpsc::Sender<Cmd>], i: usize, c: Cmd) -> bool {
    handles.get(i).is_some_and(|h| h.try_send(c).is_ok())
}

/// Sends `rate` broadcasts per second, round robin over the topics, each from the next member
/// of its topic; returns (broadcasts asked, commands dropped).
async fn publish(
    rate: u64,
    sockets: usize,
    topics: usize,
    handles: Arc<Vec<mpsc::Sender<Cmd>>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> (u64, u64) {
    if rate == 0 {
        return (0, 0);
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let (mut seq, mut dropped) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = stop.changed() => return (seq, dropped),
            _ = tick.tick() => {}
        }
        let t = seq as usize % topics;
        // Members of topic t are t, t + topics, t + 2·topics, … below `sockets`.
        let members = (sockets - t.min(sockets)).div_ceil(topics).max(1);
        let i = t + topics * ((seq as usize / topics) % members);
        if !command(&handles, i, Cmd::Publish) {
            dropped += 1;
            shared.error("command queue full", format!("socket {i} (publish)"));
        }
        seq += 1;
    }
}

/// What the churn task asked for.
#[derive(Default)]
struct Churned {
    rejoins: u64,
    reconnects: u64,
    queue_full: u64,
}

/// `churn` presence events per second on random sockets: tracks, and every `every`-th event
/// a rejoin or a reconnect in turn.
async fn churn(
    churn: u64,
    every: u64,
    handles: Arc<Vec<mpsc::Sender<Cmd>>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Churned {
    let mut out = Churned::default();
    if churn == 0 {
        return out;
    }
    let mut rng = XorShift::seeded();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / churn as f64));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = stop.changed() => return out,
            _ = tick.tick() => {}
        }
        n += 1;
        let i = (rng.next() % handles.len() as u64) as usize;
        let c = if every > 0 && n.is_multiple_of(every) {
            if (n / every) % 2 == 1 {
                out.rejoins += 1;
                Cmd::Rejoin
            } else {
                out.reconnects += 1;
                Cmd::Reconnect
            }
        } else {
            Cmd::Track
        };
        if !command(&handles, i, c) {
            out.queue_full += 1;
            shared.error("command queue full", format!("socket {i} ({c:?})"));
        }
    }
}

/// xorshift64: random enough to pick sockets, with no dependency.
struct XorShift(u64);

impl XorShift {
    fn seeded() -> XorShift {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        XorShift(t | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
