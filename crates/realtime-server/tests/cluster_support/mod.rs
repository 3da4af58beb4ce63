//! Fixture of the multi-node tests: a throwaway `redis-server` on a free port (stopped and
//! started again on the same port to play an outage), and `realtime` binaries as separate
//! processes pointed at it, each on its own port, killed with SIGKILL when a test wants a node
//! to die. Every process is killed when its handle drops.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::gateway_common::Client;
use crate::support::{free_port, now, sign, JWT_SECRET};

const BIN: &str = env!("CARGO_BIN_EXE_realtime");

/// A `redis-server` of the test's own, without persistence.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one on a free port and waits until it answers.
    pub fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        r.resume();
        r
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it again on the same port (after [`Redis::kill`]).
    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &self.dir.path().display().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: install Debian's redis-server (.ci/run does)");
        self.child = Some(child);
        let start = Instant::now();
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: connections drop at once, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs a command with `redis-cli`; its output, or `None` when Redis did not answer.
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

    /// How many connections listen on `channel`.
    pub fn listeners(&self, channel: &str) -> usize {
        self.cli(&["PUBSUB", "NUMSUB", channel])
            .and_then(|t| t.lines().nth(1).and_then(|n| n.trim().parse().ok()))
            .unwrap_or(0)
    }

    /// Waits until `n` connections listen on `channel`.
    pub async fn await_listeners(&self, channel: &str, n: usize) {
        let start = Instant::now();
        loop {
            let seen = self.listeners(channel);
            if seen == n {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{channel}: {seen} listeners, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The Redis channel of a public topic of the standalone tenant (database 0).
pub fn public_channel(sub: &str) -> String {
    format!("realtime:0:0:12:realtime-dev:{sub}")
}

/// A `realtime` process, its output collected line by line.
pub struct Node {
    pub addr: SocketAddr,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// A standalone node (`realtime-dev` signed with [`JWT_SECRET`]) with `vars` added.
    pub fn standalone(vars: &[(&str, &str)]) -> Node {
        let mut all = vec![("API_JWT_SECRET", JWT_SECRET)];
        all.extend_from_slice(vars);
        Node::start(&all)
    }

    /// A node whose registry is `db` (the self-hosted set-up of [`crate::support::db_env`],
    /// slots suffixed with the database's name) with `vars` added.
    pub fn on_db(db: &realtime_testkit::TestDb, vars: &[(&str, &str)]) -> Node {
        let all = crate::support::db_env(db, vars);
        let borrowed: Vec<(&str, &str)> =
            all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Node::start(&borrowed)
    }

    /// Starts the binary with exactly `vars` (plus `PORT` and `PATH`) and waits until it
    /// accepts connections.
    pub fn start(vars: &[(&str, &str)]) -> Node {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn realtime");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("exited early with {status}: {:?}", lines.lock().unwrap());
            }
            assert!(start.elapsed() < Duration::from_secs(60), "not listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Node { addr, child, lines }
    }

    /// Output so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits until a line containing `needle` was printed.
    pub async fn await_line(&self, needle: &str) {
        let start = Instant::now();
        while !self.lines().iter().any(|l| l.contains(needle)) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no line with {needle:?}: {:#?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A vsn 2.0.0 socket for the standalone tenant with an `anon` token.
    pub async fn client(&self) -> Client {
        let token = sign(&json!({"role": "anon", "exp": now() + 3600}), JWT_SECRET);
        let mut req = format!(
            "ws://{}/socket/websocket?apikey={token}&vsn=2.0.0",
            self.addr
        )
        .into_client_request()
        .unwrap();
        req.headers_mut().insert(
            "host",
            HeaderValue::from_static("realtime-dev.supabase-realtime:4000"),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("upgrade");
        Client { ws, v2: true }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
