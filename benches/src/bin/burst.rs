//! Many topics under a burst: T topics × S subscribers, P publishers each with one socket per
//! topic. First a paced phase (R messages/s in all, round robin over the publishers' sockets)
//! for publish→receive latency, then a burst (every publisher socket sends B messages as fast
//! as TCP lets it, no acks) for deliveries/s and, above all, how many subscribers that kept
//! reading were closed. The `realtime` binary and the baseline server (bounded queues,
//! backpressure, a frame dropped only for a receiver stalled 2 s) run the same clients; with two
//! or more cores the server is pinned to core 0 and this load generator to core 1.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{stream, SinkExt, StreamExt, TryStreamExt};
use realtime_benches::args::Args;
use realtime_benches::client::{self, Vsn, Ws};
use realtime_benches::rlimit::raise_nofile;
use realtime_benches::server::{free_port, standalone_env, ServerProcess, JWT_SECRET};
use realtime_benches::stats::{ms, ratio, Samples};
use realtime_benches::{baseline, cpu, entry, BenchError};
use realtime_protocol::binary;
use serde_json::json;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

const USAGE: &str = "\
burst [--topics T] [--subscribers S] [--publishers P] [--rate R] [--seconds D] [--burst B]
  T topics (default 10) with S vsn 2.0.0 subscribers each (default 100); P publishers
  (default 2), each with one socket per topic. Paced phase: R messages/s in all (default 1000)
  for D seconds (default 5); burst: B messages per publisher socket back to back (default 2000).
  Needs target/release/realtime (or REALTIME_BIN).";

const JOIN_REF: &str = "1";
/// A burst whose deliveries have not moved for this long is over.
const IDLE: Duration = Duration::from_secs(3);
const CONNECT_CONCURRENCY: usize = 64;
/// Frames a burst publisher hands to its socket before one flush.
const PUBLISH_BATCH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Realtime,
    Baseline,
}

struct Plan {
    topics: usize,
    subscribers: usize,
    publishers: usize,
    rate: u64,
    paced: Duration,
    burst: usize,
}

impl Plan {
    fn receivers(&self) -> u64 {
        (self.topics * self.subscribers) as u64
    }
}

struct Outcome {
    latency: Samples,
    paced_sent: u64,
    paced_delivered: u64,
    burst_rate: f64,
    burst_delivered: u64,
    burst_expected: u64,
    closed: usize,
    cpu_seconds: f64,
    rss_kib: u64,
}

/// What the subscribers report as they go.
#[derive(Default)]
struct Tally {
    paced: AtomicU64,
    burst: AtomicU64,
    /// Nanoseconds since the epoch of the newest burst delivery.
    last_burst_ns: AtomicU64,
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() != Some(baseline::ARG) && cpu::available() >= 2 {
        cpu::pin_servers(0);
        cpu::pin_current_thread(1);
    }
    entry::main("burst", run)
}

async fn run() -> Result<(), BenchError> {
    let args = Args::from_env(USAGE)?;
    let plan = Plan {
        topics: args.number("topics", 10)?.max(1) as usize,
        subscribers: args.number("subscribers", 100)?.max(1) as usize,
        publishers: args.number("publishers", 2)?.max(1) as usize,
        rate: args.number("rate", 1000)?.max(1),
        paced: Duration::from_secs(args.number("seconds", 5)?),
        burst: args.number("burst", 2000)? as usize,
    };
    let sockets = plan.topics * (plan.subscribers + plan.publishers);
    raise_nofile(sockets as u64 * 2 + 1024);

    let port = free_port()?;
    let mut server = ServerProcess::realtime(port, &standalone_env(port))?;
    server
        .wait_http_ok("GET", "/healthcheck", &[], Duration::from_secs(30))
        .await?;
    let realtime = measure(Target::Realtime, &server, &plan).await?;
    server.stop();

    let port = free_port()?;
    let mut base = ServerProcess::baseline(port)?;
    base.wait_tcp(Duration::from_secs(10)).await?;
    let baseline = measure(Target::Baseline, &base, &plan).await?;
    base.stop();

    print(&plan, realtime, baseline);
    Ok(())
}

fn print(plan: &Plan, mut rt: Outcome, mut base: Outcome) {
    println!(
        "burst: {} topics x {} subscribers (vsn 2.0.0), {} publishers with a socket per topic; paced {} msg/s for {} s, then {} messages per publisher socket back to back{}",
        plan.topics,
        plan.subscribers,
        plan.publishers,
        plan.rate,
        plan.paced.as_secs(),
        plan.burst,
        match cpu::server_cpu() {
            Some(c) => format!("; server pinned to core {c}, load generator to core 1"),
            None => String::new(),
        }
    );
    println!(
        "{:<18} {:>8} {:>8} {:>16} {:>14} {:>22} {:>8} {:>9} {:>9}",
        "server",
        "p50 ms",
        "p99 ms",
        "paced delivered",
        "burst deliv/s",
        "burst delivered",
        "closed",
        "cpu s",
        "RSS MiB"
    );
    let row = |name: &str, o: &mut Outcome| {
        let p = [o.latency.percentile_ms(50.0), o.latency.percentile_ms(99.0)];
        println!(
            "{:<18} {:>8} {:>8} {:>16} {:>14.0} {:>22} {:>8} {:>9.1} {:>9.1}",
            name,
            ms(p[0]),
            ms(p[1]),
            format!(
                "{}/{}",
                o.paced_delivered,
                o.paced_sent * plan.subscribers as u64
            ),
            o.burst_rate,
            format!("{}/{}", o.burst_delivered, o.burst_expected),
            o.closed,
            o.cpu_seconds,
            o.rss_kib as f64 / 1024.0
        );
        p
    };
    let a = row("realtime", &mut rt);
    let b = row("baseline", &mut base);
    println!(
        "{:<18} {:>8} {:>8} {:>16} {:>14}",
        "realtime/baseline",
        ratio(a[0], b[0]),
        ratio(a[1], b[1]),
        "",
        ratio(rt.burst_rate, base.burst_rate)
    );
}

fn topic(t: usize) -> String {
    format!("realtime:burst-{t}")
}

/// Opens one socket on topic `t`; on `realtime` it also joins the channel.
async fn open(target: Target, addr: SocketAddr, token: &str, t: usize) -> Result<Ws, BenchError> {
    match target {
        Target::Realtime => {
            let mut ws =
                client::connect(&client::socket_url(addr, token, Vsn::V2), "localhost").await?;
            client::join(
                &mut ws,
                Vsn::V2,
                &topic(t),
                JOIN_REF,
                client::join_payload(json!([])),
                Duration::from_secs(30),
            )
            .await?;
            Ok(ws)
        }
        Target::Baseline => client::connect(&format!("ws://{addr}/burst-{t}"), "localhost").await,
    }
}

async fn measure(
    target: Target,
    server: &ServerProcess,
    plan: &Plan,
) -> Result<Outcome, BenchError> {
    let addr = server.addr();
    let token = client::token(JWT_SECRET, "authenticated")?;
    let token_ref = &token;
    let epoch = Instant::now();
    let tally = Arc::new(Tally::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    let subscribers: Vec<Ws> = stream::iter(0..plan.receivers() as usize)
        .map(|i| open(target, addr, token_ref, i % plan.topics))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    let receivers: Vec<_> = subscribers
        .into_iter()
        .map(|ws| tokio::spawn(receive(ws, epoch, tally.clone(), stop_rx.clone())))
        .collect();
    let mut publishers: Vec<(usize, Ws)> = stream::iter(0..plan.topics * plan.publishers)
        .map(|i| async move {
            let t = i % plan.topics;
            open(target, addr, token_ref, t).await.map(|ws| (t, ws))
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    let cpu_start = realtime_benches::server::cpu_seconds(server.pid())?;

    // Paced phase.
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / plan.rate));
    let paced_until = Instant::now() + plan.paced;
    let mut paced_sent = 0u64;
    while Instant::now() < paced_until {
        ticker.tick().await;
        let i = paced_sent as usize % publishers.len();
        let (t, ws) = &mut publishers[i];
        let payload = json!({"t": epoch.elapsed().as_nanos() as u64});
        ws.send(client::user_broadcast_push(
            JOIN_REF,
            &paced_sent.to_string(),
            &topic(*t),
            "p",
            &payload,
        )?)
        .await?;
        paced_sent += 1;
    }
    let want = paced_sent * plan.subscribers as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tally.paced.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Burst.
    let burst_start = epoch.elapsed().as_nanos() as u64;
    let senders: Vec<_> = publishers
        .into_iter()
        .map(|(t, ws)| tokio::spawn(publish_burst(ws, topic(t), plan.burst)))
        .collect();
    let burst_expected = (plan.topics * plan.publishers * plan.burst * plan.subscribers) as u64;
    let mut last = (0u64, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = tally.burst.load(Ordering::Relaxed);
        if n >= burst_expected {
            break;
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() >= IDLE {
            break;
        }
    }
    let cpu_seconds = realtime_benches::server::cpu_seconds(server.pid())? - cpu_start;
    let rss_kib = server.rss_kib()?;
    let _ = stop_tx.send(true);
    for s in senders {
        if let Ok(Ok(mut ws)) = s.await {
            let _ = ws.close(None).await;
        }
    }
    let mut latency = Samples::new();
    let mut closed = 0;
    for r in receivers {
        let (lat, was_closed) = r
            .await
            .map_err(|e| BenchError::Setup(format!("subscriber task: {e}")))?;
        latency.extend_micros(lat);
        closed += usize::from(was_closed);
    }
    let burst_delivered = tally.burst.load(Ordering::Relaxed);
    let burst_end = tally.last_burst_ns.load(Ordering::Relaxed);
    let secs = burst_end.saturating_sub(burst_start) as f64 / 1e9;
    Ok(Outcome {
        latency,
        paced_sent,
        paced_delivered: tally.paced.load(Ordering::Relaxed),
        burst_rate: if secs > 0.0 {
            burst_delivered as f64 / secs
        } else {
            f64::NAN
        },
        burst_delivered,
        burst_expected,
        closed,
        cpu_seconds,
        rss_kib,
    })
}

/// Sends `n` broadcasts on `topic` as fast as the socket takes them.
async fn publish_burst(mut ws: Ws, topic: String, n: usize) -> Result<Ws, BenchError> {
    let payload = json!({"burst": true});
    for i in 0..n {
        let frame = client::user_broadcast_push(JOIN_REF, &i.to_string(), &topic, "b", &payload)?;
        ws.feed(frame).await?;
        if (i + 1) % PUBLISH_BATCH == 0 {
            ws.flush().await?;
        }
    }
    ws.flush().await?;
    Ok(ws)
}

/// Reads until told to stop; returns the paced latencies (µs) and whether the server closed
/// the socket first.
async fn receive(
    mut ws: Ws,
    epoch: Instant,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
) -> (Vec<u64>, bool) {
    let mut latencies = Vec::new();
    let closed = loop {
        let msg = tokio::select! {
            _ = stop.changed() => break false,
            m = ws.next() => m,
        };
        let bytes = match msg {
            Some(Ok(Message::Binary(b))) => b,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break true,
            Some(Ok(_)) => continue,
        };
        let ub = match bytes.first() {
            Some(&binary::KIND_USER_BROADCAST) => binary::decode_user_broadcast(&bytes),
            Some(&binary::KIND_USER_BROADCAST_PUSH) => binary::decode_user_broadcast_push(&bytes),
            _ => continue,
        };
        let Ok(ub) = ub else { continue };
        let now = epoch.elapsed().as_nanos() as u64;
        if ub.event == "b" {
            tally.burst.fetch_add(1, Ordering::Relaxed);
            tally.last_burst_ns.fetch_max(now, Ordering::Relaxed);
        } else if let Some(t) = serde_json::from_slice::<serde_json::Value>(&ub.payload)
            .ok()
            .and_then(|p| p["t"].as_u64())
        {
            latencies.push(now.saturating_sub(t) / 1000);
            tally.paced.fetch_add(1, Ordering::Relaxed);
        }
    };
    let _ = ws.close(None).await;
    (latencies, closed)
}
