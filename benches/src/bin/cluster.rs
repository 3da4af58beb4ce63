//! Broadcast fan-out across nodes (`REDIS_URL`): the `fanout` load (N subscribers on one topic,
//! vsn 2.0.0 and 1.0.0 mixed, one publisher) on one node without Redis, on one node with Redis,
//! and spread over several nodes sharing a `redis-server` of the bench's own. Prints
//! publish→receive latency for the subscribers on the publisher's node and on the other nodes,
//! delivered messages per second over a burst, and the servers' CPU time, with ratios to the
//! single node without Redis measured in the same run.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt, TryStreamExt};
use realtime_benches::args::Args;
use realtime_benches::client::{self, Vsn, Ws};
use realtime_benches::rlimit::raise_nofile;
use realtime_benches::server::{
    cpu_seconds, free_port, set_var, standalone_env, ServerProcess, JWT_SECRET, TENANT,
};
use realtime_benches::stamped::{self, Seen};
use realtime_benches::stats::{ms, ratio, Samples};
use realtime_benches::{baseline, cpu, entry, BenchError};
use realtime_testkit::redis::Redis;
use serde_json::json;

const USAGE: &str = "\
cluster [--subscribers N] [--messages M] [--burst B] [--interval-ms I] [--nodes K]
        [--one-node-redis 1|0] [--pin 1|0] [--rounds R]
  N subscribers (default 1000, half vsn 2.0.0, half 1.0.0) on one topic; one publisher sends
  M broadcasts one every I ms (default 200 every 20 ms) for latency, then B back to back
  (default 200) for throughput. Measured on one node without Redis (the reference), on one
  node with REDIS_URL (unless --one-node-redis 0), and on K nodes (default 3) sharing a
  redis-server started by the bench, subscribers spread evenly over the nodes and the
  publisher on the first. With two cores or more, every server process (the nodes and
  redis-server) runs on core 0 and the clients on core 1 (--pin 0: no pinning). With
  --rounds R (default 1) every setup runs R times in turn and the medians are printed. Needs target/release/realtime (or REALTIME_BIN), redis-server and
  redis-cli.";

const SUB_TOPIC: &str = "bench";
const TOPIC: &str = "realtime:bench";
const JOIN_REF: &str = "1";
/// A subscriber that hears nothing for this long has received everything it will.
const IDLE: Duration = Duration::from_secs(5);
const CONNECT_CONCURRENCY: usize = 64;

struct Plan {
    subscribers: usize,
    paced: usize,
    burst: usize,
    interval: Duration,
    nodes: usize,
}

/// What the subscribers of some nodes saw.
#[derive(Default)]
struct Group {
    subscribers: usize,
    latency: Samples,
    burst_count: u64,
    /// Last burst arrival, ns since the epoch of the run.
    burst_end: u64,
    delivered: u64,
    /// Messages a subscriber received more than once.
    duplicates: u64,
}

impl Group {
    fn add(&mut self, seen: &[Seen], paced: usize) {
        self.subscribers += 1;
        self.delivered += seen.len() as u64;
        let mut once = std::collections::HashSet::with_capacity(seen.len());
        for &(seq, lat, at) in seen {
            if !once.insert(seq) {
                self.duplicates += 1;
            }
            if (seq as usize) < paced {
                self.latency.extend_micros([lat]);
            } else {
                self.burst_count += 1;
                self.burst_end = self.burst_end.max(at);
            }
        }
    }
}

struct Outcome {
    /// Subscribers on the publisher's node.
    local: Group,
    /// Subscribers on the other nodes.
    remote: Group,
    /// Every subscriber.
    all: Group,
    burst_start: u64,
    /// CPU seconds of the `realtime` processes and of Redis over the paced phase and the burst.
    cpu_servers: f64,
    cpu_redis: f64,
    expected_each: u64,
}

/// One printed line: a name and figures.
struct Row {
    name: String,
    subscribers: usize,
    p: [f64; 3],
    burst_ms: f64,
    rate: f64,
    delivered: u64,
    expected: u64,
    duplicates: u64,
    cpu: Option<(f64, f64)>,
}

fn main() -> ExitCode {
    // Every server process (each node and redis-server) on core 0 and the clients on core 1,
    // so that one node and three get the same CPU budget; `--pin 0` lets them float.
    let cores = cpu::available();
    let pin = Args::from_env(USAGE)
        .and_then(|a| a.number("pin", 1))
        .unwrap_or(1)
        != 0;
    if pin && std::env::args().nth(1).as_deref() != Some(baseline::ARG) && cores >= 2 {
        cpu::pin_servers(0);
        cpu::pin_current_thread(1);
    }
    entry::main("cluster", move || run(cores))
}

/// `cores`: how many this process could run on before it pinned itself.
async fn run(cores: usize) -> Result<(), BenchError> {
    let args = Args::from_env(USAGE)?;
    let plan = Plan {
        subscribers: args.number("subscribers", 1000)?.max(1) as usize,
        paced: args.number("messages", 200)? as usize,
        burst: args.number("burst", 200)? as usize,
        interval: Duration::from_millis(args.number("interval-ms", 20)?),
        nodes: args.number("nodes", 3)?.clamp(2, 16) as usize,
    };
    let one_node_redis = args.number("one-node-redis", 1)? != 0;
    raise_nofile(plan.subscribers as u64 * 2 + 1024);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_string();

    let rounds = args.number("rounds", 1)?.max(1) as usize;
    let mut all_rounds = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        all_rounds.push(round(&plan, one_node_redis).await?);
    }
    let mut rows = merge(all_rounds);
    let reference = rows.remove(0);

    println!(
        "cluster: {} subscribers on one topic ({} vsn 2.0.0, {} vsn 1.0.0); {} paced broadcasts every {} ms, then {} back to back; {} cores, load average {} at start",
        plan.subscribers,
        plan.subscribers.div_ceil(2),
        plan.subscribers / 2,
        plan.paced,
        plan.interval.as_millis(),
        plan.burst,
        cores,
        load
    );
    let placement = match cpu::server_cpu() {
        Some(core) => {
            format!(
                "the nodes and redis-server pinned to core {core}, the clients to core {}",
                core + 1
            )
        }
        None => "no pinning: the nodes, redis-server and the clients share every core".into(),
    };
    println!(
        "{} nodes: subscribers spread evenly, the publisher on node 1; {placement}",
        plan.nodes
    );
    if rounds > 1 {
        println!(
            "{rounds} rounds, each running every setup in turn: medians of each figure, deliveries summed"
        );
    }
    println!(
        "{:<30} {:>5} {:>8} {:>8} {:>8} {:>9} {:>12} {:>16} {:>14}",
        "run",
        "subs",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "burst ms",
        "delivered/s",
        "delivered/exp.",
        "CPU s (redis)"
    );
    for r in std::iter::once(&reference).chain(rows.iter()) {
        let cpu = match r.cpu {
            Some((all, redis)) => format!("{all:.2} ({redis:.2})"),
            None => String::new(),
        };
        println!(
            "{:<30} {:>5} {:>8} {:>8} {:>8} {:>9} {:>12.0} {:>16} {:>14}",
            r.name,
            r.subscribers,
            ms(r.p[0]),
            ms(r.p[1]),
            ms(r.p[2]),
            ms(r.burst_ms),
            r.rate,
            format!("{}/{}", r.delivered, r.expected),
            cpu
        );
    }
    for r in std::iter::once(&reference).chain(rows.iter()) {
        if r.duplicates > 0 {
            println!("{}: {} messages received twice", r.name, r.duplicates);
        }
    }
    println!("ratios to one node without Redis:");
    for r in &rows {
        let cpu = match (r.cpu, reference.cpu) {
            (Some((a, _)), Some((b, _))) => ratio(a, b),
            _ => String::new(),
        };
        println!(
            "{:<30} {:>5} {:>8} {:>8} {:>8} {:>9} {:>12} {:>16} {:>14}",
            r.name,
            "",
            ratio(r.p[0], reference.p[0]),
            ratio(r.p[1], reference.p[1]),
            ratio(r.p[2], reference.p[2]),
            ratio(r.burst_ms, reference.burst_ms),
            // A group's rate covers only its share of the subscribers.
            if r.cpu.is_some() {
                ratio(r.rate, reference.rate)
            } else {
                String::new()
            },
            "",
            cpu
        );
    }
    Ok(())
}

/// Every setup once, in order: one node without Redis (the first row), one node with Redis,
/// then the nodes (publisher's node, other nodes, all).
async fn round(plan: &Plan, one_node_redis: bool) -> Result<Vec<Row>, BenchError> {
    let mut rows = Vec::with_capacity(5);
    // One node, no Redis: the server as it runs without cluster mode.
    {
        let port = free_port()?;
        let mut server = ServerProcess::realtime(port, &standalone_env(port))?;
        server
            .wait_http_ok("GET", "/healthcheck", &[], Duration::from_secs(30))
            .await?;
        let out = measure(&[server.addr()], &[server.pid()], None, plan).await?;
        server.stop();
        rows.push(overall("one node", &out));
    }
    // One node with REDIS_URL: every message also goes to Redis and comes back (skipped).
    if one_node_redis {
        let redis = Redis::try_start_with(cpu::pin_command)?;
        let mut nodes = start_nodes(1, &redis).await?;
        let out = measure(&addrs(&nodes), &pids(&nodes), Some(&redis), plan).await?;
        nodes.iter_mut().for_each(ServerProcess::stop);
        rows.push(overall("one node + Redis", &out));
    }
    let redis = Redis::try_start_with(cpu::pin_command)?;
    let mut nodes = start_nodes(plan.nodes, &redis).await?;
    let spread = measure(&addrs(&nodes), &pids(&nodes), Some(&redis), plan).await?;
    nodes.iter_mut().for_each(ServerProcess::stop);
    let k = plan.nodes;
    rows.push(group(
        &format!("{k} nodes: publisher's node"),
        &spread.local,
        &spread,
    ));
    rows.push(group(
        &format!("{k} nodes: other nodes"),
        &spread.remote,
        &spread,
    ));
    rows.push(overall(&format!("{k} nodes: all"), &spread));
    Ok(rows)
}

/// The median of the finite values (NaN when there are none).
fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// One row per setup out of several rounds: the median of each figure, deliveries summed.
fn merge(mut rounds: Vec<Vec<Row>>) -> Vec<Row> {
    let Some(first) = rounds.pop() else {
        return Vec::new();
    };
    if rounds.is_empty() {
        return first;
    }
    first
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            let same: Vec<&Row> = rounds
                .iter()
                .filter_map(|r| r.get(i))
                .chain([&row])
                .collect();
            let pick = |f: &dyn Fn(&Row) -> f64| median(same.iter().map(|r| f(r)).collect());
            Row {
                name: row.name.clone(),
                subscribers: row.subscribers,
                p: [pick(&|r| r.p[0]), pick(&|r| r.p[1]), pick(&|r| r.p[2])],
                burst_ms: pick(&|r| r.burst_ms),
                rate: pick(&|r| r.rate),
                delivered: same.iter().map(|r| r.delivered).sum(),
                expected: same.iter().map(|r| r.expected).sum(),
                duplicates: same.iter().map(|r| r.duplicates).sum(),
                cpu: row.cpu.map(|_| {
                    (
                        pick(&|r| r.cpu.map_or(f64::NAN, |c| c.0)),
                        pick(&|r| r.cpu.map_or(f64::NAN, |c| c.1)),
                    )
                }),
            }
        })
        .collect()
}

fn addrs(nodes: &[ServerProcess]) -> Vec<SocketAddr> {
    nodes.iter().map(ServerProcess::addr).collect()
}

fn pids(nodes: &[ServerProcess]) -> Vec<u32> {
    nodes.iter().map(ServerProcess::pid).collect()
}

/// Starts `n` standalone nodes pointed at `redis` and waits until each answers.
async fn start_nodes(n: usize, redis: &Redis) -> Result<Vec<ServerProcess>, BenchError> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let port = free_port()?;
        let mut vars = standalone_env(port);
        set_var(&mut vars, "REDIS_URL", redis.url());
        nodes.push(ServerProcess::realtime(port, &vars)?);
    }
    for node in &mut nodes {
        node.wait_http_ok("GET", "/healthcheck", &[], Duration::from_secs(30))
            .await?;
    }
    Ok(nodes)
}

/// The Redis channel of the bench's topic (public, standalone tenant, database 0).
fn channel() -> String {
    format!("realtime:0:0:{}:{TENANT}:{SUB_TOPIC}", TENANT.len())
}

fn nanos_to_ms(n: u64) -> f64 {
    n as f64 / 1e6
}

fn burst_figures(g: &Group, burst_start: u64) -> (f64, f64) {
    if g.burst_count == 0 {
        return (f64::NAN, f64::NAN);
    }
    let nanos = g.burst_end.saturating_sub(burst_start);
    let secs = nanos as f64 / 1e9;
    let rate = if secs > 0.0 {
        g.burst_count as f64 / secs
    } else {
        f64::NAN
    };
    (nanos_to_ms(nanos), rate)
}

fn percentiles(g: &Group) -> [f64; 3] {
    let mut s = g.latency.clone();
    [
        s.percentile_ms(50.0),
        s.percentile_ms(95.0),
        s.percentile_ms(99.0),
    ]
}

fn group(name: &str, g: &Group, o: &Outcome) -> Row {
    let (burst_ms, rate) = burst_figures(g, o.burst_start);
    Row {
        name: name.to_string(),
        subscribers: g.subscribers,
        p: percentiles(g),
        burst_ms,
        rate,
        delivered: g.delivered,
        expected: g.subscribers as u64 * o.expected_each,
        duplicates: g.duplicates,
        cpu: None,
    }
}

fn overall(name: &str, o: &Outcome) -> Row {
    Row {
        cpu: Some((o.cpu_servers + o.cpu_redis, o.cpu_redis)),
        ..group(name, &o.all, o)
    }
}

fn total_cpu(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&p| cpu_seconds(p).ok()).sum()
}

/// Opens one subscriber or the publisher on `addr` and joins the topic.
async fn open(addr: SocketAddr, token: &str, vsn: Vsn) -> Result<Ws, BenchError> {
    let mut ws = client::connect(&client::socket_url(addr, token, vsn), "localhost").await?;
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

/// Runs the load on `nodes` (subscriber `i` on node `i % nodes.len()`, the publisher on the
/// first); with `redis`, first waits until every node listens on the topic's channel.
async fn measure(
    nodes: &[SocketAddr],
    server_pids: &[u32],
    redis: Option<&Redis>,
    plan: &Plan,
) -> Result<Outcome, BenchError> {
    let token = client::token(JWT_SECRET, "authenticated")?;
    let total = plan.paced + plan.burst;
    let epoch = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));

    let token_ref = &token;
    let subscribers: Vec<(usize, Ws)> = stream::iter(0..plan.subscribers)
        .map(|i| async move {
            let vsn = if i % 2 == 0 { Vsn::V2 } else { Vsn::V1 };
            let node = i % nodes.len();
            Ok::<_, BenchError>((node, open(nodes[node], token_ref, vsn).await?))
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    if let Some(redis) = redis {
        redis
            .try_await_listeners(&channel(), nodes.len(), Duration::from_secs(30))
            .await?;
    }
    let tasks: Vec<_> = subscribers
        .into_iter()
        .map(|(node, ws)| {
            let delivered = delivered.clone();
            tokio::spawn(async move {
                (
                    node,
                    stamped::receive(ws, epoch, total, delivered, IDLE).await,
                )
            })
        })
        .collect();

    let redis_pid: Vec<u32> = redis.and_then(Redis::pid).into_iter().collect();
    let cpu_before = (total_cpu(server_pids), total_cpu(&redis_pid));
    let mut publisher = open(nodes[0], &token, Vsn::V2).await?;
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

    let mut local = Group::default();
    let mut remote = Group::default();
    let mut all = Group::default();
    for t in tasks {
        let (node, seen) = t
            .await
            .map_err(|e| BenchError::Setup(format!("subscriber task: {e}")))?;
        all.add(&seen, plan.paced);
        if node == 0 {
            local.add(&seen, plan.paced);
        } else {
            remote.add(&seen, plan.paced);
        }
    }
    let cpu_servers = total_cpu(server_pids) - cpu_before.0;
    let cpu_redis = total_cpu(&redis_pid) - cpu_before.1;
    let _ = publisher.close(None).await;
    Ok(Outcome {
        local,
        remote,
        all,
        burst_start,
        cpu_servers,
        cpu_redis,
        expected_each: total as u64,
    })
}
