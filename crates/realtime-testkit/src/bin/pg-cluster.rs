//! `pg-cluster`: the shared test cluster for tests written outside Rust (the supabase-js suite).
//!
//! Starts [`Cluster::shared`], creates one bootstrapped database and prints one JSON line with
//! its connection parameters on stdout. It then waits until stdin reaches end of file (the
//! parent closed it or died) or SIGTERM/SIGINT/SIGHUP arrives, and exits normally so that the
//! crate's exit hook stops PostgreSQL and removes the cluster directory. A signal's default
//! action would end the process without running that hook, hence the handlers.

use std::io::{Read, Write};
use std::process::ExitCode;

use realtime_testkit::{Cluster, SUPERUSER, SUPERUSER_PASSWORD};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pg-cluster: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run());
    // The stdin reader may still be blocked in read(2); it is a plain thread, so it does not
    // hold the process open.
    runtime.shutdown_background();
    code
}

async fn run() -> ExitCode {
    // Handlers first: a signal during the cluster start must still end in cleanup.
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            eprintln!("pg-cluster: cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };

    let cluster = Cluster::shared();
    let db = cluster.create_database().await;
    let line = serde_json::json!({
        "host": db.host(),
        "port": db.port,
        "dbname": db.name,
        "user": SUPERUSER,
        "password": SUPERUSER_PASSWORD,
    });
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // Nobody is listening: clean up at once.
        return ExitCode::FAILURE;
    }
    drop(stdout);

    let (eof_tx, eof_rx) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        // Anything written to stdin is ignored; end of file or an error ends the wait.
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = eof_tx.send(());
    });

    tokio::select! {
        _ = eof_rx => {}
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = hup.recv() => {}
    }
    ExitCode::SUCCESS
}
