//! Admin routes acting on live WebSocket clients, with a real registry: connected users in the
//! health body, and updates of admission rules (`suspend`) disconnecting the tenant's sockets
//! (CONTROL-PLANE §4.3, §5.4).

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::*;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(server: &TestServer) -> Ws {
    let url = server.ws_url(&format!(
        "/socket/websocket?apikey={}&vsn=1.0.0",
        anon_token()
    ));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("host", HeaderValue::from_static(HOST));
    let (ws, res) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    assert_eq!(res.status(), 101);
    ws
}

async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(_))) => continue,
            Err(_) => panic!("no frame within 10 s"),
        }
    }
}

async fn join(ws: &mut Ws, room: &str) {
    let msg = json!({"topic": format!("realtime:{room}"), "event": "phx_join",
                     "payload": {"config": {}}, "ref": "1", "join_ref": "1"});
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
    loop {
        let reply = next_json(ws).await.expect("join reply");
        if reply["event"] == "phx_reply" {
            assert_eq!(reply["payload"]["status"], "ok", "{reply}");
            return;
        }
    }
}

async fn health(server: &TestServer) -> Value {
    let res = server
        .admin("GET", "/api/tenants/realtime-dev/health", None)
        .await;
    assert_eq!(res.status, 200);
    res.json()["data"].clone()
}

#[tokio::test]
async fn connected_users_show_in_health_and_suspend_disconnects_them() {
    let server = TestServer::with_db(&[("CONNECT_ERROR_BACKOFF_MS", "50")]).await;
    let mut ws = connect(&server).await;
    join(&mut ws, "room1").await;

    // A socket with a joined channel counts, and while the tenant has sockets its replication
    // connection (broadcast from the database) runs: healthy and connected, as upstream with a
    // live database connection.
    let want = json!({"healthy": true, "db_connected": true, "replication_connected": true,
                      "connected_cluster": 1, "region": null, "node": "realtime@127.0.0.1"});
    // Creating the logical slot waits for every transaction running in the cluster, which on a
    // loaded machine (other tests migrating their databases) can take tens of seconds.
    let mut data = health(&server).await;
    for _ in 0..1200 {
        if data == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        data = health(&server).await;
    }
    assert_eq!(data, want);

    // Suspending the tenant through the API disconnects the socket.
    let res = server
        .admin(
            "PUT",
            "/api/tenants/realtime-dev",
            Some(&json!({"tenant": {"suspend": true}})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let mut saw_disconnect = false;
    while let Some(frame) = next_json(&mut ws).await {
        if frame["event"] == "system"
            && frame["payload"]["message"] == "Server requested disconnect"
        {
            saw_disconnect = true;
        }
    }
    assert!(
        saw_disconnect,
        "the socket was closed without the system message"
    );

    // New handshakes are refused while suspended (the cache was updated by the API call).
    let url = server.ws_url(&format!(
        "/socket/websocket?apikey={}&vsn=1.0.0",
        anon_token()
    ));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("host", HeaderValue::from_static(HOST));
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403),
        other => panic!(
            "expected a 403 refusal, got {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
    server.stop().await;
}

#[tokio::test]
async fn unchanged_admission_rules_keep_sockets_open() {
    let server = TestServer::with_db(&[]).await;
    let mut ws = connect(&server).await;
    join(&mut ws, "room2").await;
    let res = server
        .admin(
            "PATCH",
            "/api/tenants/realtime-dev",
            Some(&json!({"tenant": {"max_concurrent_users": 300}})),
        )
        .await;
    assert_eq!(res.status, 200);
    // The socket still answers a heartbeat.
    let hb = json!({"topic": "phoenix", "event": "heartbeat", "payload": {}, "ref": "9"});
    ws.send(Message::Text(hb.to_string().into())).await.unwrap();
    let reply = next_json(&mut ws).await.expect("heartbeat reply");
    assert_eq!(reply["ref"], "9", "{reply}");
    assert_eq!(reply["payload"]["status"], "ok");
    server.stop().await;
}
