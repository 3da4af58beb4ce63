//! Broadcast fan-out: N subscribers on one topic (vsn 2.0.0 and 1.0.0 mixed) and one publisher
//! sending kind-3 JSON broadcasts as realtime-js does. Prints publish→receive latency (paced
//! messages) and delivered messages per second (a burst), for the `realtime` binary and for the
//! protocol-free baseline server with the same clients and the same frames.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt, TryStreamExt};
use realtime_benches::args::Args;
use realtime_benches::client::{self, Vsn, Ws};
use realtime_benches::rlimit::raise_nofile;
use realtime_benches::server::{free_port, standalone_env, ServerProcess, JWT_SECRET};
use realtime_benches::stamped;
use realtime_benches::stats::{ms, ratio, Samples};
use realtime_benches::{entry, BenchError};
use serde_json::json;

const USAGE: &str = "\
fanout [--subscribers N] [--messages M] [--burst B] [--interval-ms I]
  N subscribers (default 1000, half vsn 2.0.0, half 1.0.0) on one topic; one publisher sends
  M broadcasts one every I ms (default 200 every 20 ms) for latency, then B back to back
  (default 200) for throughput. Needs target/release/realtime (or REALTIME_BIN).";

const TOPIC: &str = "realtime:bench";
const JOIN_REF: &str = "1";
/// A subscriber that hears nothing for this long has received everything it will.
const IDLE: Duration = Duration::from_secs(5);
const CONNECT_CONCURRENCY: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Realtime,
    Baseline,
}

struct Plan {
    subscribers: usize,
    paced: usize,
    burst: usize,
    interval: Duration,
}

struct Outcome {
    latency: Samples,
    burst_rate: f64,
    delivered: u64,
    expected: u64,
}

fn main() -> ExitCode {
    entry::main("fanout", run)
}

async fn run() -> Result<(), BenchError> {
    let args = Args::from_env(USAGE)?;
    let plan = Plan {
        subscribers: args.number("subscribers", 1000)?.max(1) as usize,
        paced: args.number("messages", 200)? as usize,
        burst: args.number("burst", 200)? as usize,
        interval: Duration::from_millis(args.number("interval-ms", 20)?),
    };
    raise_nofile(plan.subscribers as u64 * 2 + 1024);

    let port = free_port()?;
    let mut server = ServerProcess::realtime(port, &standalone_env(port))?;
    server
        .wait_http_ok("GET", "/healthcheck", &[], Duration::from_secs(30))
        .await?;
    let realtime = measure(Target::Realtime, server.addr(), &plan).await?;
    server.stop();

    let port = free_port()?;
    let mut base = ServerProcess::baseline(port)?;
    base.wait_tcp(Duration::from_secs(10)).await?;
    let baseline = measure(Target::Baseline, base.addr(), &plan).await?;
    base.stop();

    print(&plan, realtime, baseline);
    Ok(())
}

fn print(plan: &Plan, mut rt: Outcome, mut base: Outcome) {
    println!(
        "fanout: {} subscribers on one topic ({} vsn 2.0.0, {} vsn 1.0.0); {} paced broadcasts every {} ms, then {} back to back",
        plan.subscribers,
        plan.subscribers.div_ceil(2),
        plan.subscribers / 2,
        plan.paced,
        plan.interval.as_millis(),
        plan.burst
    );
    println!(
        "{:<20} {:>9} {:>9} {:>9} {:>16} {:>20}",
        "server", "p50 ms", "p95 ms", "p99 ms", "delivered/s", "delivered/expected"
    );
    let row = |name: &str, o: &mut Outcome| {
        let p = [
            o.latency.percentile_ms(50.0),
            o.latency.percentile_ms(95.0),
            o.latency.percentile_ms(99.0),
        ];
        println!(
            "{:<20} {:>9} {:>9} {:>9} {:>16.0} {:>20}",
            name,
            ms(p[0]),
            ms(p[1]),
            ms(p[2]),
            o.burst_rate,
            format!("{}/{}", o.delivered, o.expected)
        );
        p
    };
    let a = row("realtime", &mut rt);
    let b = row("baseline", &mut base);
    println!(
        "{:<20} {:>9} {:>9} {:>9} {:>16}",
        "realtime/baseline",
        ratio(a[0], b[0]),
        ratio(a[1], b[1]),
        ratio(a[2], b[2]),
        ratio(rt.burst_rate, base.burst_rate)
    );
}

/// Opens one client; on `realtime` it also joins the topic.
async fn open(target: Target, addr: SocketAddr, token: &str, vsn: Vsn) -> Result<Ws, BenchError> {
    match target {
        Target::Realtime => {
            let mut ws =
                client::connect(&client::socket_url(addr, token, vsn), "localhost").await?;
            client::join(
                &mut ws,
                vsn,
                TOPIC,
                JOIN_REF,
                client::join_payload(json!([])),
                Duration::from_secs(30),
            )
            .await?;
            Ok(ws)
        }
        Target::Baseline => client::connect(&format!("ws://{addr}/"), "localhost").await,
    }
}

async fn measure(target: Target, addr: SocketAddr, plan: &Plan) -> Result<Outcome, BenchError> {
    let token = client::token(JWT_SECRET, "authenticated")?;
    let total = plan.paced + plan.burst;
    let epoch = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));

    let token_ref = &token;
    let subscribers: Vec<Ws> = stream::iter(0..plan.subscribers)
        .map(|i| {
            let vsn = if i % 2 == 0 { Vsn::V2 } else { Vsn::V1 };
            open(target, addr, token_ref, vsn)
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    let tasks: Vec<_> = subscribers
        .into_iter()
        .map(|ws| tokio::spawn(stamped::receive(ws, epoch, total, delivered.clone(), IDLE)))
        .collect();

    let mut publisher = open(target, addr, &token, Vsn::V2).await?;
    let mut ticker = tokio::time::interval(plan.interval.max(Duration::from_millis(1)));
    for seq in 0..plan.paced {
        ticker.tick().await;
        stamped::publish(&mut publisher, TOPIC, JOIN_REF, seq, epoch).await?;
    }
    // Let the paced phase drain so the burst starts from empty queues.
    let want = (plan.subscribers * plan.paced) as u64;
    let deadline = Instant::now() + Duration::from_secs(15);
    while delivered.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let burst_start = epoch.elapsed().as_nanos() as u64;
    for seq in plan.paced..total {
        stamped::publish(&mut publisher, TOPIC, JOIN_REF, seq, epoch).await?;
    }

    let mut latency = Samples::new();
    let mut burst_count = 0u64;
    let mut burst_end = burst_start;
    let mut count = 0u64;
    for t in tasks {
        let seen = t
            .await
            .map_err(|e| BenchError::Setup(format!("subscriber task: {e}")))?;
        count += seen.len() as u64;
        for (seq, lat, at) in seen {
            if (seq as usize) < plan.paced {
                latency.extend_micros([lat]);
            } else {
                burst_count += 1;
                burst_end = burst_end.max(at);
            }
        }
    }
    let _ = publisher.close(None).await;
    let secs = (burst_end.saturating_sub(burst_start)) as f64 / 1e9;
    Ok(Outcome {
        latency,
        burst_rate: if secs > 0.0 {
            burst_count as f64 / secs
        } else {
            f64::NAN
        },
        delivered: count,
        expected: (plan.subscribers * total) as u64,
    })
}
