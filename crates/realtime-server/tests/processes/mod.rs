//! The `realtime` binary as a child process, for the tests that need a real process (several
//! nodes, a kill, a signal, the process's own output): started on a free port with exactly the
//! variables a test gives, its output collected line by line, killed with SIGKILL or stopped
//! with SIGTERM, and killed when its handle drops.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::gateway_common::Client;
use crate::support::{anon_token, free_port, open_socket, JWT_SECRET};

const BIN: &str = env!("CARGO_BIN_EXE_realtime");

/// How long [`Node::terminate`] waits for the process to exit after SIGTERM.
const TERMINATE_WAIT: Duration = Duration::from_secs(15);

/// The Redis channel of a public topic of the standalone tenant (database 0).
pub fn public_channel(sub: &str) -> String {
    format!("realtime:0:0:12:realtime-dev:{sub}")
}

/// A `realtime` process, its output collected line by line.
pub struct Node {
    pub addr: SocketAddr,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The threads reading stdout and stderr; they end with the process's pipes.
    readers: Vec<JoinHandle<()>>,
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
        let readers = [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ]
        .into_iter()
        .map(|stream| {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            })
        })
        .collect();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("exited early with {status}: {:?}", lines.lock().unwrap());
            }
            assert!(start.elapsed() < Duration::from_secs(60), "not listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Node {
            addr,
            child,
            lines,
            readers,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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

    /// SIGKILL; returns once the process is gone and all its output was read.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finish_reading();
    }

    /// SIGTERM; waits (at most [`TERMINATE_WAIT`]) until the process exits and returns its
    /// exit code (-1 when a signal ended it), the time it took and all its output.
    pub fn terminate(mut self) -> (i32, Duration, Vec<String>) {
        let start = Instant::now();
        // SAFETY: signalling our own child process.
        assert_eq!(
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) },
            0
        );
        let code = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status.code().unwrap_or(-1);
            }
            if start.elapsed() > TERMINATE_WAIT {
                let _ = self.child.kill();
                panic!("no exit after SIGTERM: {:?}", self.lines());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = start.elapsed();
        self.finish_reading();
        (code, took, self.lines())
    }

    /// Waits for the reader threads, which end at the end of the exited process's output.
    fn finish_reading(&mut self) {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// A vsn 2.0.0 socket for the standalone tenant with an `anon` token.
    pub async fn client(&self) -> Client {
        let ws = open_socket(self.addr, &anon_token(), "2.0.0").await;
        Client { ws, v2: true }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
