//! A throwaway `redis-server` on a free port, without persistence, in a directory of its own:
//! stopped and started again on the same port to play an outage, killed when dropped; and the
//! questions tests and benches ask it through `redis-cli`.

use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long `redis-server` may take to answer `PING` after it was started.
const START_WAIT: Duration = Duration::from_secs(20);

/// How long [`Redis::await_listeners`] waits.
const LISTEN_WAIT: Duration = Duration::from_secs(20);

/// Why `redis-server` did not come up, or did not reach the state waited for.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The binary could not be run.
    #[error("cannot start redis-server ({0}): install it (Debian: apt-get install redis-server)")]
    Spawn(std::io::Error),
    /// It started and exited before answering.
    #[error("redis-server exited early ({0})")]
    Exited(ExitStatus),
    /// It did not answer `PING` in time.
    #[error("redis-server did not answer PING")]
    NoAnswer,
    /// No free port or temporary directory.
    #[error("redis-server setup: {0}")]
    Setup(std::io::Error),
    /// Not as many connections as expected listened on a channel in time.
    #[error("{channel}: {seen} listeners in Redis after {limit:?}, expected {expected}")]
    Listeners {
        /// The channel.
        channel: String,
        /// Listeners at the deadline.
        seen: usize,
        /// Listeners waited for.
        expected: usize,
        /// How long it waited.
        limit: Duration,
    },
}

/// A `redis-server` child process on 127.0.0.1.
pub struct Redis {
    /// The port it listens on (the same after [`Redis::resume`]).
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    prepare: fn(&mut Command),
}

impl Redis {
    /// Starts one on a free port and waits until it answers.
    ///
    /// Panics (this is test support) with the reason when it cannot be started.
    pub fn start() -> Redis {
        Redis::try_start_with(|_| {}).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Redis::start`], with `prepare` applied to the command before every start (e.g.
    /// to pin the process to a core); an error instead of a panic.
    pub fn try_start_with(prepare: fn(&mut Command)) -> Result<Redis, RedisError> {
        let port = outage_safe_port().map_err(RedisError::Setup)?;
        let dir = tempfile::Builder::new()
            .prefix("realtime-test-redis-")
            .tempdir()
            .map_err(RedisError::Setup)?;
        let mut redis = Redis {
            port,
            child: None,
            dir,
            prepare,
        };
        redis.try_resume()?;
        Ok(redis)
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts it again on the same port (after [`Redis::kill`]).
    ///
    /// Panics (this is test support) with the reason when it cannot be started.
    pub fn resume(&mut self) {
        if let Err(e) = self.try_resume() {
            panic!("{e}");
        }
    }

    /// Like [`Redis::resume`], an error instead of a panic.
    pub fn try_resume(&mut self) -> Result<(), RedisError> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        (self.prepare)(&mut cmd);
        self.child = Some(cmd.spawn().map_err(RedisError::Spawn)?);
        let start = Instant::now();
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(RedisError::Exited(status));
                }
            }
            if start.elapsed() > START_WAIT {
                self.kill();
                return Err(RedisError::NoAnswer);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// SIGKILL: connections drop at once, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `redis-cli -p <port> <args>`: its trimmed output, or `None` when Redis did not
    /// answer.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
    }

    /// How many connections listen on `channel` (`PUBSUB NUMSUB`).
    pub fn listeners(&self, channel: &str) -> usize {
        self.cli(&["PUBSUB", "NUMSUB", channel])
            .and_then(|t| t.lines().nth(1).and_then(|n| n.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// Waits until `n` connections listen on `channel` (a node subscribes in Redis shortly
    /// after its first local join).
    ///
    /// Panics (this is test support) when that does not happen within 20 s.
    pub async fn await_listeners(&self, channel: &str, n: usize) {
        if let Err(e) = self.try_await_listeners(channel, n, LISTEN_WAIT).await {
            panic!("{e}");
        }
    }

    /// Like [`Redis::await_listeners`] within `limit`, an error instead of a panic.
    pub async fn try_await_listeners(
        &self,
        channel: &str,
        n: usize,
        limit: Duration,
    ) -> Result<(), RedisError> {
        let start = Instant::now();
        loop {
            let seen = self.listeners(channel);
            if seen == n {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(RedisError::Listeners {
                    channel: channel.to_string(),
                    seen,
                    expected: n,
                    limit,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free port below the kernel's ephemeral range: a port the kernel hands out to `bind(0)` or
/// to outgoing connections could be taken by another test while this Redis is down, and
/// [`Redis::resume`] needs it back.
fn outage_safe_port() -> std::io::Result<u16> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    if low < 12_000 {
        // An unusual range: take what the kernel gives.
        return TcpListener::bind("127.0.0.1:0")?
            .local_addr()
            .map(|a| a.port());
    }
    let (from, span) = (low - 12_000, 10_000u32);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().rotate_left(16)
        | 1;
    for _ in 0..200 {
        // xorshift: spread over the span without a random-number dependency.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let port = (from + seed % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    TcpListener::bind("127.0.0.1:0")?
        .local_addr()
        .map(|a| a.port())
}
