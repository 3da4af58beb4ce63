//! Limits (PROTOCOL.md §12, §16 cases 69 and 71), slow consumers, and the tenant REST routes
//! (`/api/broadcast…`, `/api/ping`, §16 case 73).

mod gateway_common;

use std::time::{Duration, Instant};

use gateway_common::*;
use realtime_server::gateway::GatewaySettings;
use serde_json::{json, Value};

#[tokio::test]
async fn case69_events_limit_stops_receiving_channel() {
    let s = TestGateway::start(fast_settings()).await;
    s.update(|t| t.limits.max_events_per_second = 1);
    let mut a = s.client("2.0.0").await;
    let mut b = s.client("2.0.0").await;
    a.join_ok("room1", "1", join_config(json!({}))).await;
    b.join_ok("room1", "1", join_config(json!({}))).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut i = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "limiter never stopped the channel"
        );
        a.push(
            Some("1"),
            Some(&i.to_string()),
            "realtime:room1",
            "broadcast",
            json!({"type":"broadcast","event":"e","payload":{"i":i}}),
        )
        .await;
        i += 1;
        match b.next_within(60).await {
            Seen::Text(f) if event(&f) == "system" => {
                assert_eq!(
                    f,
                    json!(["1",null,"realtime:room1","system",{"channel":"room1","extension":"system","message":"Too many messages per second","status":"error"}])
                );
                assert_eq!(
                    b.recv().await,
                    json!(["1", "1", "realtime:room1", "phx_close", {}])
                );
                break;
            }
            Seen::Text(f) => assert_eq!(event(&f), "broadcast"),
            Seen::Nothing => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn case71_join_rate_limit_closes_1001_and_refuses_connects() {
    let s = TestGateway::start(fast_settings()).await;
    s.update(|t| t.limits.max_joins_per_second = 1);
    let mut c = s.client("2.0.0").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    loop {
        assert!(Instant::now() < deadline, "join limiter never triggered");
        let r = c
            .join(&format!("room{n}"), &n.to_string(), join_config(json!({})))
            .await;
        n += 1;
        if status(&r) == "error" {
            assert_eq!(
                payload(&r)["response"]["reason"],
                "ClientJoinRateLimitReached: Too many joins per second"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(c.closed().await, Some(1001));
    let (status, body) = s
        .refused(&format!("apikey={}&vsn=2.0.0", token_ok()), HOST, &[])
        .await;
    assert_eq!(
        (status, body.as_str()),
        (429, r#"{"error":"Too many joins per second"}"#)
    );
}

#[tokio::test]
async fn join_refused_for_uncounted_socket_over_user_limit() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    let mut b = s.client("2.0.0").await;
    s.update(|t| t.limits.max_concurrent_users = 1);
    a.join_ok("room1", "1", join_config(json!({}))).await;
    let r = b.join("room1", "1", join_config(json!({}))).await;
    assert_eq!(
        payload(&r)["response"]["reason"],
        "ConnectionRateLimitReached: Too many connected users"
    );
    // The counted socket may still join more channels.
    a.join_ok("room2", "2", join_config(json!({}))).await;
}

/// A gateway whose event limit never interferes, and three sockets joined to `room1`: one to
/// send, one that reads, one that never will.
async fn sender_fast_and_slow(settings: GatewaySettings) -> (TestGateway, Client, Client, Client) {
    let s = TestGateway::start(settings).await;
    s.update(|t| t.limits.max_events_per_second = 1_000_000);
    let mut sender = s.client("2.0.0").await;
    let mut fast = s.client("2.0.0").await;
    let mut slow = s.client("2.0.0").await;
    sender.join_ok("room1", "1", join_config(json!({}))).await;
    fast.join_ok("room1", "1", join_config(json!({}))).await;
    slow.join_ok("room1", "1", join_config(json!({}))).await;
    (s, sender, fast, slow)
}

/// Sends 400 broadcasts of 64 KiB; the fast client reads each before the next is sent, the
/// slow one never reads. Returns once the slow socket is gone from the tenant's count,
/// although it never closed itself.
async fn flood_until_the_slow_one_is_cut(s: &TestGateway, sender: &mut Client, fast: &mut Client) {
    let blob = "y".repeat(64 * 1024);
    for i in 0..400 {
        sender.broadcast_blob(i, &blob).await;
        let f = fast.recv().await;
        assert_eq!(
            f[4]["payload"]["i"],
            i,
            "{}",
            &f.to_string()[..200.min(f.to_string().len())]
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.gw.connected_count(TENANT) != 2 {
        assert!(Instant::now() < deadline, "slow client still connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn slow_client_is_disconnected_fast_client_keeps_receiving() {
    let mut settings = fast_settings();
    settings.outbound_queue = 16;
    let (s, mut sender, mut fast, mut slow) = sender_fast_and_slow(settings).await;
    assert_eq!(s.gw.connected_count(TENANT), 3);
    flood_until_the_slow_one_is_cut(&s, &mut sender, &mut fast).await;
    // Whatever it reads now ends with the connection gone.
    loop {
        match slow.next_within(2000).await {
            Seen::Closed(_) => break,
            Seen::Nothing => panic!("slow client still open"),
            _ => {}
        }
    }
}

/// The outbound queue is bounded in bytes too: with room for 1024 frames, a socket that never
/// reads is still cut off once a few MiB of 64 KiB broadcasts wait for it.
#[tokio::test]
async fn a_socket_that_never_reads_is_cut_at_the_byte_limit() {
    let mut settings = fast_settings();
    settings.outbound_queue = 1024;
    settings.outbound_queue_bytes = 1024 * 1024;
    let (s, mut sender, mut fast, _slow) = sender_fast_and_slow(settings).await;
    flood_until_the_slow_one_is_cut(&s, &mut sender, &mut fast).await;
}

#[tokio::test]
async fn case73_single_message_rest_broadcast() {
    let s = TestGateway::start(fast_settings()).await;
    let mut v2 = s.client("2.0.0").await;
    let mut v1 = s.client("1.0.0").await;
    v2.join_ok("room1", "1", join_config(json!({}))).await;
    v1.join_ok("room1", "1", join_config(json!({}))).await;
    let auth = format!("Bearer {}", token_ok());
    let (status, _, _) = http(
        &s,
        "POST",
        "/api/broadcast/room1/events/ev",
        &[
            ("Host", HOST),
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        br#"{"a":1}"#,
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        v2.recv_binary().await,
        kind4("realtime:room1", "ev", 1, br#"{"a":1}"#)
    );
    assert_eq!(
        v1.recv().await,
        json!({"event":"broadcast","payload":{"event":"ev","payload":{"a":1},"type":"broadcast"},"ref":null,"topic":"realtime:room1"})
    );

    // Binary body: kind 4 encoding 0 to vsn 2.0.0 only; the apikey header authenticates when
    // Authorization carries no scheme.
    let (status, _, _) = http(
        &s,
        "POST",
        "/api/broadcast/room1/events/bin",
        &[
            ("Host", HOST),
            ("Authorization", "raw"),
            ("apikey", &token_ok()),
            ("Content-Type", "application/octet-stream"),
            ("Accept", "application/octet-stream"),
        ],
        &[1, 2, 3],
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        v2.recv_binary().await,
        kind4("realtime:room1", "bin", 0, &[1, 2, 3])
    );
    v1.silent(200).await;

    let (status, _, body) = http(
        &s,
        "POST",
        "/api/broadcast/room1/events/ev",
        &[
            ("Host", HOST),
            ("Authorization", &auth),
            ("Content-Type", "text/plain"),
        ],
        b"x",
    )
    .await;
    assert_eq!(status, 415);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"error":"Unsupported Media Type. Use application/json or application/octet-stream"})
    );
}

#[tokio::test]
async fn batch_rest_broadcast_auth_validation_and_delivery() {
    let s = TestGateway::start(fast_settings()).await;
    let mut v2 = s.client("2.0.0").await;
    let mut v1 = s.client("1.0.0").await;
    v2.join_ok("room1", "1", join_config(json!({}))).await;
    v1.join_ok("room1", "1", join_config(json!({}))).await;
    let auth = format!("Bearer {}", token_ok());
    let body = json!({"messages":[
        {"topic":"room1","event":"cursor","payload":{"x":1}},
        {"topic":"room1","event":"cursor","payload":{"x":2},"id":"m-42"}
    ]});
    let (status, hs, _) = http(
        &s,
        "POST",
        "/api/broadcast",
        &[
            ("Host", HOST),
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
            ("Origin", "http://x"),
        ],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(header(&hs, "access-control-allow-origin"), Some("*"));
    assert_eq!(
        v2.recv().await,
        json!([null,null,"realtime:room1","broadcast",{"event":"cursor","payload":{"x":1},"type":"broadcast"}])
    );
    assert_eq!(
        v2.recv().await,
        json!([null,null,"realtime:room1","broadcast",{"event":"cursor","payload":{"x":2},"type":"broadcast","meta":{"id":"m-42"}}])
    );
    assert_eq!(v1.recv().await["payload"]["payload"], json!({"x":1}));

    let (status, _, body) = post_broadcast(
        &s,
        &auth,
        br#"{"messages":[{"topic":"room1"},{"topic":"r","event":"e","payload":{}}]}"#,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"errors":{"messages":[{"payload":["can't be blank"],"event":["can't be blank"]},{}]}})
    );

    let bad = format!(
        "Bearer {}",
        sign(json!({"role":"anon","exp":now()+10}), "wrong")
    );
    let (status, _, body) = post_broadcast(&s, &bad, br#"{"messages":[]}"#).await;
    assert_eq!(
        (status, body.as_str()),
        (401, r#"{"message":"Unauthorized"}"#)
    );

    let (status, _, body) = http(
        &s,
        "POST",
        "/api/broadcast",
        &[("Host", "nope.localhost"), ("Authorization", &auth)],
        br#"{"messages":[]}"#,
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (401, r#"{"message":"Tenant not found in database"}"#)
    );

    s.update(|t| t.suspend = true);
    let (status, _, body) = post_broadcast(&s, &auth, br#"{"messages":[]}"#).await;
    assert_eq!(
        (status, body.as_str()),
        (403, r#"{"message":"Tenant is suspended"}"#)
    );
}

#[tokio::test]
async fn ping_reports_rate_headers_and_limits() {
    let s = TestGateway::start(fast_settings()).await;
    let (status, hs, body) = http(&s, "GET", "/api/ping", &[("Host", HOST)], b"").await;
    assert_eq!((status, body.as_str()), (200, r#"{"message":"Success"}"#));
    assert_eq!(header(&hs, "x-rate-limit"), Some("100"));
    assert!(header(&hs, "x-rate-rolling").is_some());
    assert!(header(&hs, "x-rate-limit-remaining").is_some());
    s.update(|t| t.limits.max_events_per_second = 0);
    let (status, _, body) = http(&s, "GET", "/api/ping", &[("Host", HOST)], b"").await;
    assert_eq!(
        (status, body.as_str()),
        (429, r#"{"message":"Too many requests"}"#)
    );
    let (status, _, _) = http(&s, "GET", "/api/ping", &[("Host", "nope.localhost")], b"").await;
    assert_eq!(status, 401);
    let (status, _, _) = http(
        &s,
        "GET",
        "/api/ping",
        &[("Host", HOST), ("Accept", "text/html")],
        b"",
    )
    .await;
    assert_eq!(status, 406);
}

#[tokio::test]
async fn server_requested_disconnect_counts_as_tenant_events() {
    let s = TestGateway::start(fast_settings()).await;
    s.update(|t| {
        t.limits.max_events_per_second = 20;
        t.limits.max_joins_per_second = 1_000_000;
    });
    // 40 channels receive "Server requested disconnect": 40 events in one 100 ms bucket.
    let mut a = s.client("2.0.0").await;
    for i in 0..40 {
        a.join_ok(&format!("room{i}"), &i.to_string(), join_config(json!({})))
            .await;
    }
    s.gw.disconnect_tenant(TENANT).await;
    assert_eq!(a.closed().await, Some(1012));
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Over the next 12 buckets the tenant averages at least 40 / 1.2 s > 20 events per
    // second, so the first broadcast delivered stops its receiver.
    let mut b = s.client("2.0.0").await;
    let mut c = s.client("2.0.0").await;
    b.join_ok("room0", "1", join_config(json!({}))).await;
    c.join_ok("room0", "1", join_config(json!({}))).await;
    let msg = json!({"type":"broadcast","event":"e","payload":{}});
    b.push(
        Some("1"),
        Some("2"),
        "realtime:room0",
        "broadcast",
        msg.clone(),
    )
    .await;
    assert_eq!(
        c.recv().await,
        json!([null, null, "realtime:room0", "broadcast", msg])
    );
    assert_eq!(
        c.recv().await,
        json!(["1",null,"realtime:room0","system",{"channel":"room0","extension":"system","message":"Too many messages per second","status":"error"}])
    );
}
