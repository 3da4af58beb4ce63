//! Shared by the gateway's end-to-end tests: the gateway served in-process on `127.0.0.1:0`
//! with a fixed tenant set, real WebSocket clients (tokio-tungstenite), tokens and frame helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{encode, EncodingKey, Header};
use realtime_server::gateway::{self, Gateway, GatewaySettings, StaticTenants, TenantView};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The test tenant and its secret.
pub const TENANT: &str = "realtime-dev";
pub const SECRET: &str = "test-secret-with-at-least-32-characters";
pub const HOST: &str = "realtime-dev.localhost";

/// Settings with short delays so tests do not wait on upstream's backoffs.
pub fn fast_settings() -> GatewaySettings {
    GatewaySettings {
        connect_error_backoff: Duration::from_millis(50),
        channel_error_backoff: Duration::from_millis(50),
        rate_tick: Duration::from_millis(100),
        ..GatewaySettings::default()
    }
}

pub struct TestGateway {
    pub addr: SocketAddr,
    pub gw: Arc<Gateway>,
    pub tenants: Arc<StaticTenants>,
}

impl TestGateway {
    /// A gateway with tenant `realtime-dev` (HS256 [`SECRET`], default limits).
    pub async fn start(settings: GatewaySettings) -> TestGateway {
        TestGateway::start_with(settings, TenantView::new(TENANT, SECRET)).await
    }

    pub async fn start_with(settings: GatewaySettings, tenant: TenantView) -> TestGateway {
        let tenants = Arc::new(StaticTenants::default());
        tenants.put(tenant);
        let gw = Gateway::new(settings, tenants.clone(), None);
        let app = gateway::router(gw.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestGateway { addr, gw, tenants }
    }

    /// Replaces the tenant (limits, flags) as an API update would.
    pub fn update(&self, f: impl FnOnce(&mut TenantView)) {
        let mut t = TenantView::new(TENANT, SECRET);
        f(&mut t);
        self.tenants.put(t);
    }

    pub fn url(&self, query: &str) -> String {
        format!("ws://{}/socket/websocket?{}", self.addr, query)
    }

    /// Connects with `apikey` = a valid token and `vsn`.
    pub async fn client(&self, vsn: &str) -> Client {
        let q = format!("apikey={}&vsn={vsn}", token_ok());
        self.connect(&q, HOST, &[]).await.expect("upgrade")
    }

    /// Like [`TestGateway::client`], over a TCP socket whose receive buffer is fixed at
    /// `bytes` (no autotuning), so a client that stops reading backs up the server quickly.
    pub async fn client_with_receive_buffer(&self, vsn: &str, bytes: u32) -> Client {
        let q = format!("apikey={}&vsn={vsn}", token_ok());
        let mut req = self.url(&q).into_client_request().unwrap();
        req.headers_mut()
            .insert("host", HeaderValue::from_str(HOST).unwrap());
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(bytes).unwrap();
        let stream = socket.connect(self.addr).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream))
            .await
            .expect("upgrade");
        Client {
            ws,
            v2: vsn.starts_with('2'),
        }
    }

    pub async fn connect(
        &self,
        query: &str,
        host: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, (u16, String)> {
        let mut req = self.url(query).into_client_request().unwrap();
        req.headers_mut()
            .insert("host", HeaderValue::from_str(host).unwrap());
        for (k, v) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let vsn2 = query.contains("vsn=2");
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(Client { ws, v2: vsn2 }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err((status, body))
            }
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    /// A connect that must be refused; returns status and body.
    pub async fn refused(
        &self,
        query: &str,
        host: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        match self.connect(query, host, headers).await {
            Ok(_) => panic!("upgrade unexpectedly accepted"),
            Err(e) => e,
        }
    }
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub fn sign(claims: Value, secret: &str) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// The §16 token T.
pub fn token_ok() -> String {
    sign(
        json!({"role":"authenticated","exp":now()+3600,"sub":"u1"}),
        SECRET,
    )
}

/// `{"config": …}` of "Join R" with overrides merged at the top of `config`.
pub fn join_config(overrides: Value) -> Value {
    let mut cfg = json!({"broadcast":{"ack":false,"self":false},"presence":{"key":"","enabled":false},"postgres_changes":[],"private":false});
    if let (Value::Object(c), Value::Object(o)) = (&mut cfg, overrides) {
        for (k, v) in o {
            c.insert(k, v);
        }
    }
    json!({ "config": cfg })
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub v2: bool,
}

/// What a client can observe next.
#[derive(Debug)]
pub enum Seen {
    Text(Value),
    Binary(Vec<u8>),
    Closed(Option<u16>),
    Nothing,
}

impl Client {
    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s.to_string())).await.unwrap();
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        self.ws.send(Message::binary(b)).await.unwrap();
    }

    /// The next data frame or close within `ms`.
    pub async fn next_within(&mut self, ms: u64) -> Seen {
        loop {
            match tokio::time::timeout(Duration::from_millis(ms), self.ws.next()).await {
                Err(_) => return Seen::Nothing,
                Ok(None) => return Seen::Closed(None),
                Ok(Some(Err(_))) => return Seen::Closed(None),
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Seen::Text(serde_json::from_str(t.as_str()).unwrap())
                }
                Ok(Some(Ok(Message::Binary(b)))) => return Seen::Binary(b.to_vec()),
                Ok(Some(Ok(Message::Close(f)))) => {
                    return Seen::Closed(f.map(|f| u16::from(f.code)))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next text frame as JSON (fails on anything else within 5 s).
    pub async fn recv(&mut self) -> Value {
        match self.next_within(5000).await {
            Seen::Text(v) => v,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    pub async fn recv_binary(&mut self) -> Vec<u8> {
        match self.next_within(5000).await {
            Seen::Binary(b) => b,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// Asserts that nothing arrives within `ms`.
    pub async fn silent(&mut self, ms: u64) {
        match self.next_within(ms).await {
            Seen::Nothing => {}
            other => panic!("expected nothing, got {other:?}"),
        }
    }

    /// The close code the server sends next (within 5 s).
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.next_within(5000).await {
                Seen::Closed(c) => return c,
                Seen::Nothing => panic!("socket still open"),
                _ => continue,
            }
        }
    }

    /// A vsn 2.0.0 frame `[join_ref, ref, topic, event, payload]`.
    pub async fn push(
        &mut self,
        join_ref: Option<&str>,
        r: Option<&str>,
        topic: &str,
        event: &str,
        payload: Value,
    ) {
        if self.v2 {
            self.send(json!([join_ref, r, topic, event, payload])).await;
        } else {
            self.send(json!({"join_ref": join_ref, "ref": r, "topic": topic, "event": event, "payload": payload}))
                .await;
        }
    }

    /// Broadcasts event `e` with payload `{"i": i, "blob": blob}` on `realtime:room1`, joined
    /// with join ref `1`; no reply is asked for.
    pub async fn broadcast_blob(&mut self, i: usize, blob: &str) {
        self.push(
            Some("1"),
            None,
            "realtime:room1",
            "broadcast",
            json!({"type":"broadcast","event":"e","payload":{"i":i,"blob":blob}}),
        )
        .await;
    }

    /// Joins `realtime:<sub>` with join ref = ref = `jr` and returns the reply.
    pub async fn join(&mut self, sub: &str, jr: &str, payload: Value) -> Value {
        self.push(
            Some(jr),
            Some(jr),
            &format!("realtime:{sub}"),
            "phx_join",
            payload,
        )
        .await;
        self.recv().await
    }

    /// Joins and asserts an ok reply.
    pub async fn join_ok(&mut self, sub: &str, jr: &str, payload: Value) {
        let r = self.join(sub, jr, payload).await;
        assert_eq!(status(&r), "ok", "join reply {r}");
    }
}

/// Reply status of a vsn 2.0.0 or 1.0.0 reply.
pub fn status(frame: &Value) -> String {
    payload(frame)["status"].as_str().unwrap_or("").to_string()
}

/// The payload of a frame in either serializer.
pub fn payload(frame: &Value) -> &Value {
    if frame.is_array() {
        &frame[4]
    } else {
        &frame["payload"]
    }
}

/// The event of a frame in either serializer.
pub fn event(frame: &Value) -> &str {
    if frame.is_array() {
        frame[3].as_str().unwrap_or("")
    } else {
        frame["event"].as_str().unwrap_or("")
    }
}

/// A kind-3 user broadcast push.
pub fn kind3(
    join_ref: &str,
    r: &str,
    topic: &str,
    event: &str,
    encoding: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = vec![
        3,
        join_ref.len() as u8,
        r.len() as u8,
        topic.len() as u8,
        event.len() as u8,
        0,
        encoding,
    ];
    b.extend_from_slice(join_ref.as_bytes());
    b.extend_from_slice(r.as_bytes());
    b.extend_from_slice(topic.as_bytes());
    b.extend_from_slice(event.as_bytes());
    b.extend_from_slice(payload);
    b
}

/// The expected kind-4 frame for a topic, event and payload (no metadata).
pub fn kind4(topic: &str, event: &str, encoding: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![4, topic.len() as u8, event.len() as u8, 0, encoding];
    b.extend_from_slice(topic.as_bytes());
    b.extend_from_slice(event.as_bytes());
    b.extend_from_slice(payload);
    b
}

/// `POST /api/broadcast` of a JSON `body` to the test tenant with `Authorization: auth`;
/// returns what [`http`] does.
pub async fn post_broadcast(
    s: &TestGateway,
    auth: &str,
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    http(
        s,
        "POST",
        "/api/broadcast",
        &[
            ("Host", HOST),
            ("Authorization", auth),
            ("Content-Type", "application/json"),
        ],
        body,
    )
    .await
}

/// A raw HTTP/1.1 request; returns status, headers (lowercased names) and body.
pub async fn http(
    s: &TestGateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let hs = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    (status, hs, body.to_string())
}

pub fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
