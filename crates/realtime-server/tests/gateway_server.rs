//! The gateway inside the whole server (standalone registry, seeded tenant, server-wide
//! layers): §16 case 70 (tenant change via the management API drains sockets), REST routes
//! through the server's router, and the connect refusal for an unknown Host.

mod gateway_common;
mod support;

use gateway_common::{join_config, kind4, Client};
use serde_json::json;
use support::{anon_token, TestServer, HOST};

async fn connect(server: &TestServer, vsn: &str) -> Client {
    Client {
        ws: server.socket(&anon_token(), vsn).await,
        v2: vsn == "2.0.0",
    }
}

#[tokio::test]
async fn case70_jwt_secret_change_drains_sockets() {
    let server = TestServer::standalone(&[]).await;
    let mut c = connect(&server, "2.0.0").await;
    c.join_ok("room1", "1", join_config(json!({}))).await;
    assert_eq!(server.state.connected_count("realtime-dev"), 1);
    let res = server
        .admin(
            "PATCH",
            "/api/tenants/realtime-dev",
            Some(&json!({"tenant": {"jwt_secret": "another-secret-with-at-least-32-characters"}})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(
        c.recv().await,
        json!([null,null,"realtime:room1","system",{"extension":"system","message":"Server requested disconnect","status":"ok"}])
    );
    assert_eq!(c.closed().await, Some(1012));
}

#[tokio::test]
async fn rest_routes_through_the_server_router() {
    let server = TestServer::standalone(&[]).await;
    let mut v2 = connect(&server, "2.0.0").await;
    v2.join_ok("room1", "1", join_config(json!({}))).await;
    let auth = format!("Bearer {}", anon_token());

    let res = server
        .request(
            "POST",
            "/api/broadcast/room1/events/ev",
            &[
                ("host", HOST),
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(br#"{"a":1}"#),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    assert_eq!(
        v2.recv_binary().await,
        kind4("realtime:room1", "ev", 1, br#"{"a":1}"#)
    );

    let res = server
        .request(
            "POST",
            "/api/broadcast/room1/events/bin",
            &[
                ("host", HOST),
                ("authorization", &auth),
                ("content-type", "application/octet-stream"),
            ],
            Some(&[9, 8, 7]),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    assert_eq!(
        v2.recv_binary().await,
        kind4("realtime:room1", "bin", 0, &[9, 8, 7])
    );

    let res = server
        .send_json(
            "POST",
            "/api/broadcast",
            &[("host", HOST), ("authorization", &auth)],
            &json!({"messages":[{"topic":"room1","event":"e","payload":{"x":1}}]}),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    assert_eq!(
        v2.recv().await,
        json!([null,null,"realtime:room1","broadcast",{"event":"e","payload":{"x":1},"type":"broadcast"}])
    );

    let res = server.get("/api/ping", &[("host", HOST)]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.json(), json!({"message":"Success"}));
    assert!(res.header("x-rate-limit").is_some());
}
