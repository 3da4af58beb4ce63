//! The session driven without a WebSocket: inputs in, frames read from the link's queue.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message as WsMessage;
use jsonwebtoken::{encode, EncodingKey, Header};
use realtime_protocol::{InFrame, Vsn};
use serde_json::{json, Map, Value};

use crate::gateway::session::{ConnectInfo, Input, Next, Session};
use crate::gateway::{Gateway, GatewaySettings, StaticTenants, TenantView};

const TENANT: &str = "realtime-dev";
const SECRET: &str = "session-test-secret-with-32-characters";

fn token(exp_in: i64) -> String {
    let claims =
        json!({"role":"authenticated","sub":"u1","exp": chrono::Utc::now().timestamp() + exp_in});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn gateway() -> Arc<Gateway> {
    let tenants = Arc::new(StaticTenants::default());
    tenants.put(TenantView::new(TENANT, SECRET));
    let settings = GatewaySettings {
        channel_error_backoff: Duration::from_millis(1),
        ..GatewaySettings::default()
    };
    Gateway::new(settings, tenants, None)
}

fn open(gw: &Arc<Gateway>, token: String) -> Session {
    let tenant = Arc::new(TenantView::new(TENANT, SECRET));
    Session::open(
        gw.clone(),
        ConnectInfo {
            tenant,
            token,
            headers: Map::new(),
            vsn: Vsn::V2,
        },
    )
}

async fn frame(s: &mut Session, v: Value) -> Next {
    let text = v.to_string();
    s.handle(Input::Frame(InFrame::Text(&text))).await
}

/// Every text frame queued for the session so far.
fn sent(s: &Session) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(m) = s.link().out.try_recv() {
        if let WsMessage::Text(t) = m {
            out.push(serde_json::from_str(t.as_str()).unwrap());
        }
    }
    out
}

fn join(topic: &str, jr: &str) -> Value {
    json!([jr, jr, topic, "phx_join", {"config": {"broadcast": {"self": false, "ack": true}, "presence": {"enabled": false}, "private": false}}])
}

#[tokio::test]
async fn heartbeat_and_unmatched_topic() {
    let gw = gateway();
    let mut s = open(&gw, token(3600));
    assert_eq!(
        frame(&mut s, json!([null, "1", "phoenix", "heartbeat", {}])).await,
        Next::Continue
    );
    assert_eq!(
        sent(&s),
        vec![json!([null, "1", "phoenix", "phx_reply", {"status": "ok", "response": {}}])]
    );
    frame(
        &mut s,
        json!(["9", "2", "realtime:nowhere", "broadcast", {}]),
    )
    .await;
    let reply = &sent(&s)[0];
    assert_eq!(reply[4]["status"], "error", "{reply}");
    assert_eq!(reply[4]["response"]["reason"], "unmatched topic");
}

#[tokio::test]
async fn join_broadcast_leave_between_two_sessions() {
    let gw = gateway();
    let mut a = open(&gw, token(3600));
    let mut b = open(&gw, token(3600));
    for s in [&mut a, &mut b] {
        frame(s, join("realtime:room", "1")).await;
        let reply = &sent(s)[0];
        assert_eq!(reply[3], "phx_reply");
        assert_eq!(reply[4]["status"], "ok", "{reply}");
    }
    frame(
        &mut a,
        json!(["1", "2", "realtime:room", "broadcast", {"type": "broadcast", "event": "e", "payload": {"n": 1}}]),
    )
    .await;
    // The ack to the sender, the message to the other session only (self is off).
    assert_eq!(
        sent(&a),
        vec![json!(["1", "2", "realtime:room", "phx_reply", {"status": "ok", "response": {}}])]
    );
    let got = sent(&b);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0][3], "broadcast");
    assert_eq!(got[0][4]["payload"], json!({"n": 1}));

    frame(&mut b, json!(["1", "3", "realtime:room", "phx_leave", {}])).await;
    let got = sent(&b);
    assert_eq!(got[0][4]["status"], "ok");
    assert_eq!(got[1][3], "phx_close");
    frame(
        &mut a,
        json!(["1", "4", "realtime:room", "broadcast", {"type": "broadcast", "event": "e", "payload": {}}]),
    )
    .await;
    assert!(sent(&b).is_empty());
    // A socket that joined and lost every channel is dropped by the sweep.
    assert_eq!(b.handle(Input::Sweep).await, Next::Drop);
    assert_eq!(a.handle(Input::Sweep).await, Next::Continue);
    a.finish();
    b.finish();
    assert_eq!(gw.session_count(), 0);
}

#[tokio::test]
async fn an_expired_token_stops_its_channel_when_the_check_is_due() {
    let gw = gateway();
    let mut s = open(&gw, token(1));
    frame(&mut s, join("realtime:room", "1")).await;
    assert_eq!(sent(&s)[0][4]["status"], "ok");
    let due = s.next_token_check().expect("a check is scheduled");
    tokio::time::sleep_until(due).await;
    s.handle(Input::TokensDue).await;
    let got = sent(&s);
    assert_eq!(got[0][3], "system", "{got:?}");
    assert_eq!(got[0][4]["status"], "error");
    assert_eq!(got[1][3], "phx_close");
    assert!(s.next_token_check().is_none());
}

#[tokio::test]
async fn an_idle_session_closes() {
    let gw = gateway();
    let mut s = open(&gw, token(3600));
    assert_eq!(s.handle(Input::Idle).await, Next::Close);
    assert!(matches!(s.link().out.try_recv(), Some(WsMessage::Close(Some(f))) if f.code == 1000));
}
