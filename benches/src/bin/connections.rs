//! Memory per idle connection: resident memory of the server process before and after K
//! WebSocket clients connect, each joined to its own channel on `realtime`; the baseline
//! server gets the same K raw WebSocket connections.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt, TryStreamExt};
use realtime_benches::args::Args;
use realtime_benches::client::{self, Vsn, Ws};
use realtime_benches::rlimit::raise_nofile;
use realtime_benches::server::{free_port, set_var, standalone_env, ServerProcess, JWT_SECRET};
use realtime_benches::stats::ratio;
use realtime_benches::{entry, BenchError};
use serde_json::json;

const USAGE: &str = "\
connections [--connections K]
  Opens K WebSockets (default 5000) to each server and prints the growth of its VmRSS per
  connection. On realtime each socket (vsn 2.0.0) joins its own channel. Needs
  target/release/realtime (or REALTIME_BIN).";

const CONNECT_CONCURRENCY: usize = 64;
/// A second baseline row: the same server with a small per-socket read buffer, to show how
/// much of a connection's memory is tungstenite's default 128 KiB buffer.
const SMALL_READ_BUFFER: usize = 4 * 1024;
/// Time for allocations of the last connections to settle before RSS is read.
const SETTLE: Duration = Duration::from_secs(1);

struct Outcome {
    before_kib: u64,
    after_kib: u64,
    /// After every socket closed (and [`SETTLE`]).
    closed_kib: u64,
    connect_secs: f64,
}

impl Outcome {
    fn per_connection_kib(&self, k: usize) -> f64 {
        self.after_kib.saturating_sub(self.before_kib) as f64 / k as f64
    }
}

fn main() -> ExitCode {
    entry::main("connections", run)
}

async fn run() -> Result<(), BenchError> {
    let args = Args::from_env(USAGE)?;
    let k = args.number("connections", 5000)?.max(1) as usize;
    let limit = raise_nofile(k as u64 + 1024);
    if limit < k as u64 + 64 {
        return Err(BenchError::Setup(format!(
            "the open-files limit is {limit}, too low for {k} connections; raise it (ulimit -n) or pass a smaller --connections"
        )));
    }

    let port = free_port()?;
    let mut vars = standalone_env(port);
    set_var(
        &mut vars,
        "RLIMIT_NOFILE",
        (k as u64 * 2 + 4096).to_string(),
    );
    let mut server = ServerProcess::realtime(port, &vars)?;
    server
        .wait_http_ok("GET", "/healthcheck", &[], Duration::from_secs(30))
        .await?;
    let token = client::token(JWT_SECRET, "authenticated")?;
    let realtime = measure(&server, k, |i| {
        let token = token.clone();
        let addr = server.addr();
        async move { joined(addr, &token, i).await }
    })
    .await?;
    server.stop();

    let baseline = measure_baseline(k, None).await?;
    let small = measure_baseline(k, Some(SMALL_READ_BUFFER)).await?;

    println!("connections: {k} idle WebSockets per server (realtime: vsn 2.0.0, one channel joined each)");
    println!(
        "{:<26} {:>14} {:>14} {:>12} {:>12} {:>16}",
        "server", "RSS before MiB", "RSS after MiB", "KiB/conn", "connect s", "RSS closed MiB"
    );
    let small_name = format!("baseline, {} KiB read buf", SMALL_READ_BUFFER / 1024);
    for (name, o) in [
        ("realtime", &realtime),
        ("baseline", &baseline),
        (small_name.as_str(), &small),
    ] {
        println!(
            "{:<26} {:>14.1} {:>14.1} {:>12.1} {:>12.2} {:>16.1}",
            name,
            o.before_kib as f64 / 1024.0,
            o.after_kib as f64 / 1024.0,
            o.per_connection_kib(k),
            o.connect_secs,
            o.closed_kib as f64 / 1024.0
        );
    }
    println!(
        "{:<26} {:>14} {:>14} {:>12}",
        "realtime/baseline",
        "",
        "",
        ratio(
            realtime.per_connection_kib(k),
            baseline.per_connection_kib(k)
        )
    );
    // The baseline with a small read buffer is the minimal server to compare with: it pays
    // for a socket, its queue and its writer, not for a 128 KiB buffer per socket.
    println!(
        "{:<26} {:>14} {:>14} {:>12}",
        format!("realtime/{small_name}"),
        "",
        "",
        ratio(realtime.per_connection_kib(k), small.per_connection_kib(k))
    );
    Ok(())
}

/// The same K raw WebSockets to the baseline server.
async fn measure_baseline(k: usize, read_buffer: Option<usize>) -> Result<Outcome, BenchError> {
    let port = free_port()?;
    let mut base = ServerProcess::baseline_with(port, read_buffer)?;
    base.wait_tcp(Duration::from_secs(10)).await?;
    let addr = base.addr();
    let outcome = measure(&base, k, |_| async move {
        client::connect(&format!("ws://{addr}/"), "localhost").await
    })
    .await?;
    base.stop();
    Ok(outcome)
}

/// A vsn 2.0.0 socket joined to `realtime:conn-<i>`.
async fn joined(addr: SocketAddr, token: &str, i: usize) -> Result<Ws, BenchError> {
    let mut ws = client::connect(&client::socket_url(addr, token, Vsn::V2), "localhost").await?;
    client::join(
        &mut ws,
        Vsn::V2,
        &format!("realtime:conn-{i}"),
        "1",
        client::join_payload(json!([])),
        Duration::from_secs(30),
    )
    .await?;
    Ok(ws)
}

async fn measure<F, Fut>(server: &ServerProcess, k: usize, open: F) -> Result<Outcome, BenchError>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Ws, BenchError>>,
{
    tokio::time::sleep(SETTLE).await;
    let before_kib = server.rss_kib()?;
    let start = Instant::now();
    let sockets: Vec<Ws> = stream::iter(0..k)
        .map(open)
        .buffer_unordered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    let connect_secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let after_kib = server.rss_kib()?;
    drop(sockets);
    // Long enough for a server that gives freed memory back every few seconds.
    tokio::time::sleep(SETTLE * 8).await;
    let closed_kib = server.rss_kib()?;
    Ok(Outcome {
        before_kib,
        after_kib,
        closed_kib,
        connect_secs,
    })
}
