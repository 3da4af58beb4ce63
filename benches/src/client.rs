//! WebSocket clients as realtime-js drives them: connect with `apikey` and `vsn`, join a
//! topic, send kind-3 user broadcasts, and read what arrives in either serializer.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{encode, EncodingKey, Header};
use realtime_protocol::binary;
use realtime_protocol::{BroadcastEncoding, UserBroadcast};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::BenchError;

/// A client socket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The serializer a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vsn {
    /// JSON objects.
    V1,
    /// JSON arrays and binary user broadcasts.
    V2,
}

impl Vsn {
    /// The `vsn` query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Vsn::V1 => "1.0.0",
            Vsn::V2 => "2.0.0",
        }
    }
}

/// An HS256 token with `role` that expires in an hour.
pub fn token(secret: &str, role: &str) -> Result<String, BenchError> {
    token_for(secret, role, "bench")
}

/// An HS256 token with `role` and `sub` that expires in an hour.
pub fn token_for(secret: &str, role: &str, sub: &str) -> Result<String, BenchError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    encode(
        &Header::default(),
        &json!({"role": role, "exp": now + 3600, "sub": sub}),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| BenchError::Setup(format!("signing a token: {e}")))
}

/// The realtime socket URL on `addr`.
pub fn socket_url(addr: SocketAddr, token: &str, vsn: Vsn) -> String {
    format!(
        "ws://{addr}/socket/websocket?apikey={token}&vsn={}",
        vsn.as_str()
    )
}

/// Longest wait for a WebSocket upgrade.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a WebSocket to `url` with `host` as the Host header, Nagle off, within
/// [`CONNECT_TIMEOUT`].
pub async fn connect(url: &str, host: &str) -> Result<Ws, BenchError> {
    let mut req = url.into_client_request()?;
    let host = HeaderValue::from_str(host)
        .map_err(|e| BenchError::Setup(format!("host header {host:?}: {e}")))?;
    req.headers_mut().insert("host", host);
    let connecting = tokio_tungstenite::connect_async_with_config(req, None, true);
    let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| BenchError::Timeout(format!("WebSocket upgrade of {url}")))??;
    Ok(ws)
}

/// A push in the client's serializer.
pub fn push_frame(
    vsn: Vsn,
    join_ref: Option<&str>,
    msg_ref: Option<&str>,
    topic: &str,
    event: &str,
    payload: Value,
) -> Message {
    let v = match vsn {
        Vsn::V2 => json!([join_ref, msg_ref, topic, event, payload]),
        Vsn::V1 => {
            json!({"join_ref": join_ref, "ref": msg_ref, "topic": topic, "event": event, "payload": payload})
        }
    };
    Message::text(v.to_string())
}

/// The join payload realtime-js sends, with `postgres_changes` bindings.
pub fn join_payload(postgres_changes: Value) -> Value {
    json!({"config": {
        "broadcast": {"ack": false, "self": false},
        "presence": {"enabled": false, "key": ""},
        "postgres_changes": postgres_changes,
        "private": false,
    }})
}

/// Joins `topic` with `join_ref` as join ref and ref, and waits for an ok reply.
pub async fn join(
    ws: &mut Ws,
    vsn: Vsn,
    topic: &str,
    join_ref: &str,
    join_payload: Value,
    limit: Duration,
) -> Result<Value, BenchError> {
    ws.send(push_frame(
        vsn,
        Some(join_ref),
        Some(join_ref),
        topic,
        "phx_join",
        join_payload,
    ))
    .await?;
    loop {
        let frame = next_json(ws, limit)
            .await?
            .ok_or_else(|| BenchError::Timeout(format!("no reply to the join of {topic}")))?;
        if event(&frame) == "phx_reply" && msg_ref(&frame) == Some(join_ref) {
            let status = payload(&frame)["status"].as_str().unwrap_or("");
            if status == "ok" {
                return Ok(frame);
            }
            return Err(BenchError::Protocol(format!(
                "join of {topic} refused: {frame}"
            )));
        }
    }
}

/// The next text frame as JSON within `limit` (`None` on timeout); binary frames and control
/// frames are skipped; a closed socket is an error.
pub async fn next_json(ws: &mut Ws, limit: Duration) -> Result<Option<Value>, BenchError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => return Err(BenchError::Protocol("socket closed".into())),
            Ok(Some(m)) => m?,
        };
        match msg {
            Message::Text(t) => {
                return serde_json::from_str(t.as_str())
                    .map(Some)
                    .map_err(|e| BenchError::Protocol(format!("not JSON ({e}): {t}")))
            }
            Message::Close(f) => return Err(BenchError::Protocol(format!("socket closed: {f:?}"))),
            _ => continue,
        }
    }
}

/// Waits (until `deadline`) for the `postgres_changes` `system` message that ends a
/// subscription: `Ok(Ok(()))` when subscribed, `Ok(Err(text))` when the server said no or
/// said nothing in time.
pub async fn await_subscribed(
    ws: &mut Ws,
    deadline: std::time::Instant,
) -> Result<Result<(), String>, BenchError> {
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Some(frame) = next_json(ws, left).await? else {
            return Ok(Err("no system message in time".to_string()));
        };
        if event(&frame) != "system" {
            continue;
        }
        let p = payload(&frame);
        if p["extension"] != "postgres_changes" {
            continue;
        }
        if p["status"] == "ok" {
            return Ok(Ok(()));
        }
        return Ok(Err(format!("system message {p}")));
    }
}

/// Event of a frame in either serializer.
pub fn event(frame: &Value) -> &str {
    let v = if frame.is_array() {
        &frame[3]
    } else {
        &frame["event"]
    };
    v.as_str().unwrap_or("")
}

/// Payload of a frame in either serializer.
pub fn payload(frame: &Value) -> &Value {
    if frame.is_array() {
        &frame[4]
    } else {
        &frame["payload"]
    }
}

/// Ref of a frame in either serializer.
pub fn msg_ref(frame: &Value) -> Option<&str> {
    let v = if frame.is_array() {
        &frame[1]
    } else {
        &frame["ref"]
    };
    v.as_str()
}

/// A kind-3 user broadcast with a JSON payload, as realtime-js sends `channel.send` on vsn
/// 2.0.0.
pub fn user_broadcast_push(
    join_ref: &str,
    msg_ref: &str,
    topic: &str,
    event: &str,
    payload: &Value,
) -> Result<Message, BenchError> {
    let ub = UserBroadcast {
        join_ref: Some(join_ref.to_string()),
        msg_ref: Some(msg_ref.to_string()),
        topic: topic.to_string(),
        event: event.to_string(),
        metadata: Bytes::new(),
        encoding: BroadcastEncoding::Json,
        payload: Bytes::from(payload.to_string()),
    };
    binary::encode_user_broadcast_push(&ub)
        .map(Message::binary)
        .ok_or_else(|| BenchError::Setup("broadcast header longer than 255 bytes".into()))
}

/// The user payload of a broadcast as any client may receive it: a kind-4 frame (vsn 2.0.0),
/// a kind-3 frame relayed as is (the baseline), or a JSON `broadcast` push (vsn 1.0.0).
pub fn broadcast_payload(msg: &Message) -> Option<Value> {
    match msg {
        Message::Binary(b) => {
            let ub = match b.first() {
                Some(&binary::KIND_USER_BROADCAST) => binary::decode_user_broadcast(b).ok()?,
                Some(&binary::KIND_USER_BROADCAST_PUSH) => {
                    binary::decode_user_broadcast_push(b).ok()?
                }
                _ => return None,
            };
            serde_json::from_slice(&ub.payload).ok()
        }
        Message::Text(t) => {
            let v: Value = serde_json::from_str(t.as_str()).ok()?;
            if event(&v) != "broadcast" {
                return None;
            }
            Some(payload(&v)["payload"].clone())
        }
        _ => None,
    }
}
