//! A throwaway `redis-server` for the cluster bench: a free port, no persistence, its own
//! directory, killed when dropped; and the one question the bench asks it (how many
//! connections listen on a channel), through `redis-cli`. It runs on the servers' core when
//! [`crate::cpu::pin_servers`] set one.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::free_port;
use crate::BenchError;

/// A `redis-server` child process on 127.0.0.1.
pub struct RedisProcess {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    dir: PathBuf,
}

impl RedisProcess {
    /// Starts one on a free port (`--save "" --appendonly no`) and waits until it answers
    /// `PING`.
    pub async fn start() -> Result<RedisProcess, BenchError> {
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!(
            "realtime-bench-redis-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // On the servers' core when they are pinned: Redis is part of the cluster's budget.
        if let Some(cpu) = crate::cpu::server_cpu() {
            use std::os::unix::process::CommandExt;
            // SAFETY: the closure runs between fork and exec and makes one system call.
            unsafe {
                cmd.pre_exec(move || match crate::cpu::set_affinity(cpu) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| {
                BenchError::Setup(format!(
                    "cannot start redis-server ({e}): install it (Debian: apt-get install redis-server)"
                ))
            })?;
        let mut redis = RedisProcess { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while redis.cli(&["PING"]).as_deref() != Some("PONG") {
            if let Ok(Some(status)) = redis.child.try_wait() {
                return Err(BenchError::Setup(format!(
                    "redis-server exited early ({status})"
                )));
            }
            if Instant::now() > deadline {
                return Err(BenchError::Timeout(
                    "redis-server did not answer PING".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(redis)
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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
    pub async fn await_listeners(
        &self,
        channel: &str,
        n: usize,
        limit: Duration,
    ) -> Result<(), BenchError> {
        let deadline = Instant::now() + limit;
        loop {
            let seen = self.listeners(channel);
            if seen == n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BenchError::Timeout(format!(
                    "{channel}: {seen} listeners in Redis after {limit:?}, expected {n}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
