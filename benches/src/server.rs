//! The servers under test as child processes: the `realtime` release binary and the baseline
//! (this same executable re-run with [`crate::baseline::ARG`]). Each runs with its own port and
//! log file, and is stopped with SIGTERM when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{http, BenchError};

/// The JWT secret every benchmark's server is started with.
pub const JWT_SECRET: &str = "bench-secret-with-at-least-32-characters-long";
/// The tenant of standalone mode and of `SEED_SELF_HOST`.
pub const TENANT: &str = "realtime-dev";

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16, BenchError> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The `realtime` binary: `REALTIME_BIN`, else `target/release/realtime` of this workspace.
pub fn realtime_bin() -> Result<PathBuf, BenchError> {
    let path = match std::env::var_os("REALTIME_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/release/realtime"
        )),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(BenchError::Setup(format!(
            "{} not found: build it first with `cargo build --release -p realtime-server` \
             (or point REALTIME_BIN at a realtime binary)",
            path.display()
        )))
    }
}

/// Standalone-mode variables for a server on `port`, with every tenant limit raised so the
/// limiters never shape a figure.
pub fn standalone_env(port: u16) -> Vec<(String, String)> {
    let mut vars = vec![
        ("PORT", port.to_string()),
        ("API_JWT_SECRET", JWT_SECRET.to_string()),
        ("LOG_LEVEL", "error".to_string()),
        ("RLIMIT_NOFILE", "65536".to_string()),
        ("MAX_CONNECTIONS", "100000".to_string()),
        ("TENANT_MAX_CONCURRENT_USERS", "1000000".to_string()),
        ("TENANT_MAX_EVENTS_PER_SECOND", "2000000000".to_string()),
        ("TENANT_MAX_JOINS_PER_SECOND", "1000000".to_string()),
        ("TENANT_MAX_CHANNELS_PER_CLIENT", "1000".to_string()),
        ("TENANT_MAX_BYTES_PER_SECOND", "2000000000".to_string()),
    ];
    vars.push(("DISABLE_HEALTHCHECK_LOGGING", "true".to_string()));
    vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Replaces or adds `key` in `vars`.
pub fn set_var(vars: &mut Vec<(String, String)>, key: &str, value: impl Into<String>) {
    vars.retain(|(k, _)| k != key);
    vars.push((key.to_string(), value.into()));
}

/// A server running as a child process.
pub struct ServerProcess {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// When `spawn` was called.
    pub spawned_at: Instant,
    log: PathBuf,
    keep_log: bool,
    name: &'static str,
}

impl ServerProcess {
    /// Starts the `realtime` binary on `port` with exactly `vars` (plus `PATH`).
    pub fn realtime(port: u16, vars: &[(String, String)]) -> Result<ServerProcess, BenchError> {
        let bin = realtime_bin()?;
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        ServerProcess::spawn(cmd, port, "realtime")
    }

    /// Starts the baseline server (this executable, re-run) on `port`.
    pub fn baseline(port: u16) -> Result<ServerProcess, BenchError> {
        ServerProcess::baseline_with(port, None)
    }

    /// Starts the baseline server with a per-socket read buffer of `read_buffer` bytes
    /// (tungstenite's 128 KiB default when `None`).
    pub fn baseline_with(
        port: u16,
        read_buffer: Option<usize>,
    ) -> Result<ServerProcess, BenchError> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg(crate::baseline::ARG).arg(port.to_string());
        if let Some(size) = read_buffer {
            cmd.arg(size.to_string());
        }
        ServerProcess::spawn(cmd, port, "baseline")
    }

    fn spawn(mut cmd: Command, port: u16, name: &'static str) -> Result<ServerProcess, BenchError> {
        let log = std::env::temp_dir().join(format!(
            "realtime-bench-{name}-{}-{port}.log",
            std::process::id()
        ));
        let file = std::fs::File::create(&log)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file));
        crate::cpu::pin_command(&mut cmd);
        let spawned_at = Instant::now();
        let child = cmd.spawn()?;
        Ok(ServerProcess {
            child,
            port,
            spawned_at,
            log,
            keep_log: false,
            name,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory (`VmRSS` of `/proc/<pid>/status`) in KiB.
    pub fn rss_kib(&self) -> Result<u64, BenchError> {
        status_kib(self.pid(), "VmRSS")
    }

    /// Waits until `method path` answers 200; returns the time since spawn.
    pub async fn wait_http_ok(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        limit: Duration,
    ) -> Result<Duration, BenchError> {
        let deadline = self.spawned_at + limit;
        loop {
            if let Ok(200) = http::status(self.addr(), method, path, headers).await {
                return Ok(self.spawned_at.elapsed());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                self.keep_log = true;
                return Err(BenchError::Timeout(format!(
                    "{} did not answer {method} {path} with 200 within {limit:?}; log: {}",
                    self.name,
                    self.log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits until the port accepts a TCP connection; returns the time since spawn.
    pub async fn wait_tcp(&mut self, limit: Duration) -> Result<Duration, BenchError> {
        let deadline = self.spawned_at + limit;
        loop {
            if tokio::net::TcpStream::connect(self.addr()).await.is_ok() {
                return Ok(self.spawned_at.elapsed());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                self.keep_log = true;
                return Err(BenchError::Timeout(format!(
                    "{} did not listen within {limit:?}; log: {}",
                    self.name,
                    self.log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => {
                self.keep_log = true;
                Err(BenchError::Setup(format!(
                    "{} exited early ({status}); log: {}",
                    self.name,
                    self.log.display()
                )))
            }
        }
    }

    /// Keeps the log file after stopping (its path is in the error just reported).
    pub fn keep_log(&mut self) -> &std::path::Path {
        self.keep_log = true;
        &self.log
    }

    /// SIGTERM, then SIGKILL after 10 s; removes the log unless an error pointed at it.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: signalling our own child by its pid.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if !self.keep_log {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A KiB field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, …).
pub fn status_kib(pid: u32, field: &str) -> Result<u64, BenchError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| BenchError::Setup(format!("no {field} for pid {pid}")))
}

/// CPU time (user + system, `utime` + `stime` of `/proc/<pid>/stat`) in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64, BenchError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (tick(11), tick(12)) else {
        return Err(BenchError::Setup(format!("unreadable /proc/{pid}/stat")));
    };
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    Ok((utime + stime) as f64 / hz)
}
