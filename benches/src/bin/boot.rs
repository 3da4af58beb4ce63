//! Boot time: from process spawn to `GET /healthcheck` 200 in standalone mode and, with a
//! database, to `HEAD /api/tenants/realtime-dev/health` 200 with `SEED_SELF_HOST=true`. The
//! baselines are the spawn of `/bin/true` and of the baseline server until it accepts.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use realtime_benches::args::Args;
use realtime_benches::client;
use realtime_benches::db::DbSettings;
use realtime_benches::server::{free_port, standalone_env, ServerProcess, JWT_SECRET, TENANT};
use realtime_benches::stats::{ms, Samples};
use realtime_benches::{entry, BenchError};

const USAGE: &str = "\
boot [--runs R] [--db on|off]
  Spawns each server R times (default 10) and prints min and median time to ready.
  With --db on (default) the registry is a fresh database on the realtime-testkit cluster, or
  the one named by BENCH_DB_HOST, BENCH_DB_PORT, BENCH_DB_NAME, BENCH_DB_USER,
  BENCH_DB_PASSWORD. Needs target/release/realtime (or REALTIME_BIN).";

struct Row {
    name: String,
    samples: Samples,
    first: f64,
}

fn main() -> ExitCode {
    entry::main("boot", run)
}

async fn run() -> Result<(), BenchError> {
    let args = Args::from_env(USAGE)?;
    let runs = args.number("runs", 10)?.max(1) as usize;
    let with_db = match args.text("db").unwrap_or("on") {
        "on" => true,
        "off" => false,
        other => {
            return Err(BenchError::Setup(format!(
                "--db expects on or off, got `{other}`"
            )))
        }
    };
    let mut rows = Vec::new();

    let mut standalone = Vec::new();
    for _ in 0..runs {
        let port = free_port()?;
        let mut s = ServerProcess::realtime(port, &standalone_env(port))?;
        standalone.push(
            s.wait_http_ok("GET", "/healthcheck", &[], Duration::from_secs(30))
                .await?,
        );
        s.stop();
    }
    rows.push(row("realtime standalone: GET /healthcheck", &standalone));

    if with_db {
        let db = DbSettings::from_env_or_cluster().await?;
        let admin = client::token(JWT_SECRET, "service_role")?;
        let bearer = format!("Bearer {admin}");
        let path = format!("/api/tenants/{TENANT}/health");
        let mut seeded = Vec::new();
        for _ in 0..runs {
            let port = free_port()?;
            let mut s = ServerProcess::realtime(port, &db.server_env(port))?;
            seeded.push(
                s.wait_http_ok(
                    "HEAD",
                    &path,
                    &[("Authorization", bearer.as_str())],
                    Duration::from_secs(60),
                )
                .await?,
            );
            s.stop();
        }
        rows.push(row(
            "realtime + registry (SEED_SELF_HOST): HEAD tenant health",
            &seeded,
        ));
    }

    let mut truths = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        Command::new("/bin/true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        truths.push(start.elapsed());
    }
    rows.push(row("baseline: spawn /bin/true to exit", &truths));

    let mut bases = Vec::new();
    for _ in 0..runs {
        let port = free_port()?;
        let mut s = ServerProcess::baseline(port)?;
        bases.push(s.wait_tcp(Duration::from_secs(10)).await?);
        s.stop();
    }
    rows.push(row("baseline server: spawn to accepting", &bases));

    println!("boot: {runs} runs each, time from spawn to ready");
    if with_db {
        println!("tenant health = HEAD /api/tenants/{TENANT}/health; its first run migrates a fresh registry");
    }
    println!(
        "{:<58} {:>9} {:>9} {:>9}",
        "what", "first ms", "min ms", "median ms"
    );
    for mut r in rows {
        println!(
            "{:<58} {:>9} {:>9} {:>9}",
            r.name,
            ms(r.first),
            ms(r.samples.min_ms()),
            ms(r.samples.percentile_ms(50.0))
        );
    }
    Ok(())
}

fn row(name: &str, runs: &[Duration]) -> Row {
    let mut samples = Samples::new();
    for d in runs {
        samples.push(*d);
    }
    Row {
        name: name.to_string(),
        first: runs
            .first()
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN),
        samples,
    }
}
