//! Test support shared by the server's end-to-end tests: start the server in-process on
//! `127.0.0.1:0` (standalone, or over a fresh database of the shared test cluster), speak
//! HTTP/1.1 to it over a plain TCP socket, and mint JWTs.
//!
//! Use from a test file with `mod support;`. Not every test uses every item.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use realtime_server::app::AppState;
use realtime_server::config::{Config, Env};
use realtime_server::startup::{self, Running};
use realtime_testkit::{Cluster, TestDb};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The self-hosted default `JWT_SECRET`, used as `API_JWT_SECRET` by [`TestServer::with_db`].
pub const JWT_SECRET: &str = "your-super-secret-jwt-token-with-at-least-32-characters-long";

/// The seeded tenant.
pub const TENANT: &str = "realtime-dev";

/// The Host header that resolves to [`TENANT`] (what Kong sends).
pub const HOST: &str = "realtime-dev.supabase-realtime:4000";

/// A server running inside the test process.
pub struct TestServer {
    /// The bound address (`127.0.0.1:<port>`).
    pub addr: SocketAddr,
    /// The server's shared state (registry, cache, gateway, config).
    pub state: AppState,
    /// The registry database, when not standalone.
    pub db: Option<TestDb>,
    running: Option<Running>,
}

impl TestServer {
    /// A standalone server (no `DB_HOST`): in-memory registry holding one tenant
    /// `realtime-dev` signed with [`JWT_SECRET`]. `env` adds or overrides variables.
    pub async fn standalone(env: &[(&str, &str)]) -> TestServer {
        let mut vars = vec![("API_JWT_SECRET".to_string(), JWT_SECRET.to_string())];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        TestServer::start(vars, None).await
    }

    /// A server over a fresh database of the shared cluster, configured like the self-hosted
    /// compose file (`DB_AFTER_CONNECT_QUERY`, `DB_ENC_KEY=supabaserealtime`,
    /// `API_JWT_SECRET`, `SEED_SELF_HOST=true`). `env` adds or overrides variables.
    pub async fn with_db(env: &[(&str, &str)]) -> TestServer {
        let db = Cluster::shared().create_database().await;
        TestServer::on_db(db, env).await
    }

    /// Like [`TestServer::with_db`] on an existing database (e.g. to start a second time).
    pub async fn on_db(db: TestDb, env: &[(&str, &str)]) -> TestServer {
        let vars = db_env(&db, env);
        TestServer::start(vars, Some(db)).await
    }

    /// Like [`TestServer::with_db`], with `SLOT_NAME_SUFFIX` set to the database's name:
    /// replication slot names are cluster-wide and tests of a file run at once.
    pub async fn with_own_slots(env: &[(&str, &str)]) -> TestServer {
        let db = Cluster::shared().create_database().await;
        let suffix = db.name.clone();
        let mut vars: Vec<(&str, &str)> = env.to_vec();
        vars.push(("SLOT_NAME_SUFFIX", suffix.as_str()));
        TestServer::on_db(db, &vars).await
    }

    /// Starts with exactly these variables. Panics when the configuration is refused.
    pub async fn start(vars: Vec<(String, String)>, db: Option<TestDb>) -> TestServer {
        let config = Config::from_env(&vars.into_iter().collect::<Env>()).expect("valid config");
        let state = startup::prepare(config).await.expect("server prepares");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let running = startup::serve_on(state.clone(), vec![listener]).expect("serve");
        TestServer {
            addr: running.addr(),
            state,
            db,
            running: Some(running),
        }
    }

    /// Stops the server (graceful shutdown) and hands back its database.
    pub async fn stop(mut self) -> Option<TestDb> {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.db.take()
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `ws://127.0.0.1:<port><path>`
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// A WebSocket to `/socket/websocket` with `apikey` = `token` and `vsn`, sent with the
    /// [`HOST`] that resolves to the seeded tenant.
    pub async fn socket(
        &self,
        token: &str,
        vsn: &str,
    ) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        open_socket(self.addr, token, vsn).await
    }

    /// One HTTP/1.1 request.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        http_request(self.addr, method, path, headers, body).await
    }

    /// `GET` with headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        self.request("GET", path, headers, None).await
    }

    /// A JSON request (`content-type: application/json`).
    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> HttpResponse {
        let mut h = headers.to_vec();
        h.push(("content-type", "application/json"));
        let bytes = body.to_string().into_bytes();
        self.request(method, path, &h, Some(&bytes)).await
    }

    /// A request with `Authorization: Bearer <admin_token()>` (a `service_role` token).
    pub async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
        let auth = format!("Bearer {}", admin_token());
        match body {
            Some(b) => {
                self.send_json(method, path, &[("authorization", &auth)], b)
                    .await
            }
            None => {
                self.request(method, path, &[("authorization", &auth)], None)
                    .await
            }
        }
    }
}

/// The compose-like variables for a server over `db`, then `env`.
pub fn db_env(db: &TestDb, env: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = [
        ("DB_HOST", db.host().to_string()),
        ("DB_PORT", db.port.to_string()),
        ("DB_NAME", db.name.clone()),
        ("DB_USER", realtime_testkit::SUPERUSER.to_string()),
        (
            "DB_PASSWORD",
            realtime_testkit::SUPERUSER_PASSWORD.to_string(),
        ),
        (
            "DB_AFTER_CONNECT_QUERY",
            "SET search_path TO _realtime".to_string(),
        ),
        ("DB_ENC_KEY", "supabaserealtime".to_string()),
        ("API_JWT_SECRET", JWT_SECRET.to_string()),
        ("SEED_SELF_HOST", "true".to_string()),
        // Replication slot names are cluster-wide and the tests of a binary share one cluster:
        // without a suffix of its own, each server would fight the others for the same slots.
        ("SLOT_NAME_SUFFIX", db.name.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in env {
        vars.retain(|(name, _)| name != k);
        vars.push((k.to_string(), v.to_string()));
    }
    vars
}

/// A response read to the end.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }
}

/// Sends one request with `Connection: close` and reads the whole response.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("content-length: {}\r\n", b.len()));
    }
    req.push_str("connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write head");
    if let Some(b) = body {
        // The server may answer (e.g. 413) and close before reading all of it.
        let _ = stream.write_all(b).await;
    }
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                // A reset after an early answer (unread request body) still leaves the answer.
                Err(_) if !raw.is_empty() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("response within 30 s");
    read.expect("read");
    parse_response(&raw, method == "HEAD")
}

fn parse_response(raw: &[u8], head: bool) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete response head");
    let head_text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if head {
        Vec::new()
    } else if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
}

/// An HS256 token over `claims` signed with `secret`.
pub fn sign(claims: &Value, secret: &str) -> String {
    sign_with(Algorithm::HS256, claims, secret)
}

/// A token signed with the given HMAC algorithm.
pub fn sign_with(alg: Algorithm, claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A `service_role` token signed with [`JWT_SECRET`], valid for an hour (an admin token
/// allowed to change tenants).
pub fn admin_token() -> String {
    sign(
        &json!({"role": "service_role", "exp": now() + 3600}),
        JWT_SECRET,
    )
}

/// An `anon` token signed with [`JWT_SECRET`], valid for an hour (an admin token for reads,
/// and a tenant token for `realtime-dev`).
pub fn anon_token() -> String {
    sign(&json!({"role": "anon", "exp": now() + 3600}), JWT_SECRET)
}

/// The upgrade request of a WebSocket to `addr`'s `/socket/websocket` with `apikey` = `token`
/// and `vsn`, sent with the [`HOST`] that resolves to the seeded tenant.
pub fn socket_request(addr: SocketAddr, token: &str, vsn: &str) -> Request {
    let mut req = format!("ws://{addr}/socket/websocket?apikey={token}&vsn={vsn}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("host", HeaderValue::from_static(HOST));
    req
}

/// Opens the WebSocket of [`socket_request`]; panics when the upgrade is refused.
pub async fn open_socket(
    addr: SocketAddr,
    token: &str,
    vsn: &str,
) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let (ws, _) = tokio_tungstenite::connect_async(socket_request(addr, token, vsn))
        .await
        .expect("upgrade");
    ws
}

/// A free local TCP port (for the server started as a subprocess).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits until the tenant migrations created `realtime.subscription`.
pub async fn wait_migrated(db: &tokio_postgres::Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while db
        .query_one(
            "select to_regclass('realtime.subscription') is not null",
            &[],
        )
        .await
        .map(|r| !r.get::<_, bool>(0))
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "tenant migrations did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the tenant migrations created the partitions of `realtime.messages`.
pub async fn wait_messages_partitioned(db: &tokio_postgres::Client) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let parts: i64 = db
            .query_one(
                "select count(*) from pg_inherits where inhparent = to_regclass('realtime.messages')",
                &[],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        if parts > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tenant migrations did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
