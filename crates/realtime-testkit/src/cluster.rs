//! A throwaway PostgreSQL cluster, one per test process, and a fresh database per test.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::bootstrap::BOOTSTRAP_SQL;

/// Superuser created by `initdb`; the name Supabase's compose uses for Realtime.
pub const SUPERUSER: &str = "supabase_admin";
/// Its password; TCP connections authenticate with SCRAM-SHA-256.
pub const SUPERUSER_PASSWORD: &str = "postgres";

/// A running PostgreSQL cluster in a temporary directory.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `Some(user)` when the process runs as root and PostgreSQL must run as `user`.
    run_as: Option<String>,
    /// Serialises stop/start so concurrent tests see a consistent state.
    lifecycle: Mutex<()>,
}

static SHARED: OnceLock<Cluster> = OnceLock::new();
static DB_COUNTER: AtomicUsize = AtomicUsize::new(0);

extern "C" fn stop_shared_cluster() {
    if let Some(cluster) = SHARED.get() {
        cluster.destroy();
    }
}

impl Cluster {
    /// The cluster of this test process, started on first use and removed at process exit.
    ///
    /// Panics (this is test support) with the reason when PostgreSQL cannot be started.
    pub fn shared() -> &'static Cluster {
        SHARED.get_or_init(|| {
            let cluster = match Cluster::start("") {
                Ok(c) => c,
                Err(e) => panic!("cannot start the test PostgreSQL cluster: {e}"),
            };
            // SAFETY: registering a plain extern "C" function with no captured state.
            unsafe {
                libc::atexit(stop_shared_cluster);
            }
            cluster
        })
    }

    /// A cluster of its own whose `postgresql.conf` ends with `settings` (later lines win, so
    /// `"wal_level = replica\n"` overrides the default), removed when dropped. For tests of
    /// settings the shared cluster must not change.
    ///
    /// Panics (this is test support) with the reason when PostgreSQL cannot be started.
    pub fn with_settings(settings: &str) -> Cluster {
        match Cluster::start(settings) {
            Ok(c) => c,
            Err(e) => panic!("cannot start a test PostgreSQL cluster with {settings:?}: {e}"),
        }
    }

    fn start(settings: &str) -> Result<Cluster, String> {
        let bin = find_bin_dir()?;
        let run_as = if unsafe { libc::geteuid() } == 0 {
            Some(std::env::var("REALTIME_TEST_PG_USER").unwrap_or_else(|_| "postgres".into()))
        } else {
            None
        };
        let base = std::env::temp_dir().join(format!(
            "realtime-test-pg-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&base).map_err(|e| format!("create {}: {e}", base.display()))?;
        let dir = base.join("data");
        let pwfile = base.join("pw");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).map_err(|e| e.to_string())?;
        if let Some(user) = &run_as {
            let status = Command::new("chown")
                .args(["-R", user])
                .arg(&base)
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !status.success() {
                return Err(format!("chown -R {user} {} failed", base.display()));
            }
        }
        let port = free_port()?;
        let mut cluster = Cluster {
            bin,
            dir,
            port,
            run_as,
            lifecycle: Mutex::new(()),
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                path_str(&cluster.dir)?,
                "-U",
                SUPERUSER,
                "--pwfile",
                path_str(&pwfile)?,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             wal_level = logical\nmax_replication_slots = 64\nmax_wal_senders = 64\n\
             max_connections = 300\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             shared_buffers = 32MB\ntimezone = 'UTC'\nlog_timezone = 'UTC'\n\
             wal_sender_timeout = '60s'\nmax_slot_wal_keep_size = '256MB'\n{settings}",
            base.display()
        );
        let conf_path = cluster.dir.join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path).map_err(|e| e.to_string())?;
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).map_err(|e| e.to_string())?;
        // The free port can be taken by another test process before the server binds it:
        // move to another one and try again.
        let mut attempts = 0;
        loop {
            match cluster.pg_ctl_start() {
                Ok(()) => break,
                Err(e) if attempts < 5 && e.contains("Address already in use") => {
                    attempts += 1;
                    let next = free_port()?;
                    let conf = std::fs::read_to_string(&conf_path).map_err(|e| e.to_string())?;
                    let conf = conf.replace(
                        &format!("\nport = {}\n", cluster.port),
                        &format!("\nport = {next}\n"),
                    );
                    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
                    cluster.port = next;
                }
                Err(e) => return Err(e),
            }
        }
        cluster.bootstrap()?;
        Ok(cluster)
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Host to connect to.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// Connection string for `dbname` as the superuser.
    pub fn conn_str(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={SUPERUSER} password={SUPERUSER_PASSWORD} dbname={dbname}",
            self.port
        )
    }

    /// Creates a fresh database (copied from the bootstrapped `template1`).
    pub async fn create_database(&self) -> TestDb {
        let n = DB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{n}", std::process::id());
        let client = self.connect("postgres").await;
        // template1 must have no other session while it is copied; retry on that race.
        let mut last = String::new();
        for _ in 0..50 {
            match client
                .batch_execute(&format!("create database {name} template template1"))
                .await
            {
                Ok(()) => {
                    return TestDb {
                        name,
                        port: self.port,
                    }
                }
                Err(e) => {
                    last = e.to_string();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!("create database {name}: {last}");
    }

    /// A superuser connection to `dbname`; the connection task runs on the current runtime.
    pub async fn connect(&self, dbname: &str) -> tokio_postgres::Client {
        connect_str(&self.conn_str(dbname)).await
    }

    /// Stops PostgreSQL (fast shutdown: sessions are terminated) and starts it again on the
    /// same port and data directory. Used to prove that nothing committed is lost.
    pub fn restart(&self) {
        let _guard = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.pg_ctl(&["stop", "-m", "fast", "-w"]) {
            panic!("stop test cluster: {e}");
        }
        if let Err(e) = self.pg_ctl_start() {
            panic!("restart test cluster: {e}");
        }
    }

    /// Stops PostgreSQL and leaves it stopped until [`Cluster::start_again`].
    pub fn stop(&self) {
        let _guard = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.pg_ctl(&["stop", "-m", "fast", "-w"]) {
            panic!("stop test cluster: {e}");
        }
    }

    /// Starts PostgreSQL after [`Cluster::stop`].
    pub fn start_again(&self) {
        let _guard = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.pg_ctl_start() {
            panic!("start test cluster: {e}");
        }
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let log = self.dir.with_file_name("postgres.log");
        self.pg_ctl(&["start", "-w", "-t", "60", "-l", path_str(&log)?])
            .map(|_| ())
            .map_err(|e| {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                format!("{e}\npostgres.log:\n{tail}")
            })
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, String> {
        let mut full = vec!["-D", path_str(&self.dir)?];
        full.extend_from_slice(args);
        self.run("pg_ctl", &full)
    }

    fn bootstrap(&self) -> Result<(), String> {
        let psql = |db: &str, sql: &str| -> Result<Output, String> {
            let port = self.port.to_string();
            self.run(
                "psql",
                &[
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    SUPERUSER,
                    "-d",
                    db,
                    "-c",
                    sql,
                ],
            )
        };
        psql("template1", BOOTSTRAP_SQL)?;
        Ok(())
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args).env("PGPASSWORD", SUPERUSER_PASSWORD);
        let out = cmd
            .output()
            .map_err(|e| format!("run {}: {e}", exe.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} {:?} failed: {}{}",
                exe.display(),
                args,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(out)
    }

    fn destroy(&self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        if let Some(base) = self.dir.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

impl Drop for Cluster {
    // Only clusters from `with_settings` are ever dropped; the shared one lives in a static.
    fn drop(&mut self) {
        self.destroy();
    }
}

/// A database of its own for one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    /// Database name.
    pub name: String,
    /// Cluster port on 127.0.0.1.
    pub port: u16,
}

impl TestDb {
    /// Host to connect to.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// Superuser connection string.
    pub fn conn_str(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={SUPERUSER} password={SUPERUSER_PASSWORD} dbname={}",
            self.port, self.name
        )
    }

    /// A superuser connection; the connection task runs on the current runtime.
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect_str(&self.conn_str()).await
    }
}

async fn connect_str(conn: &str) -> tokio_postgres::Client {
    let mut last = String::new();
    for _ in 0..100 {
        match tokio_postgres::connect(conn, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                return client;
            }
            Err(e) => {
                // The cluster may be restarting under another test.
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    panic!("connect to test cluster ({conn}): {last}");
}

fn find_bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("REALTIME_TEST_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if dir.join("initdb").exists() {
                return Ok(dir);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((v, bin))
            })
            .collect();
        versions.sort();
        if let Some((_, bin)) = versions.pop() {
            return Ok(bin);
        }
    }
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
                return Ok(dir);
            }
        }
    }
    Err("no PostgreSQL binaries found (install postgresql, or set REALTIME_TEST_PG_BIN)".into())
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("non-UTF-8 path {}", p.display()))
}
