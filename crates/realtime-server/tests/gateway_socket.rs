//! PROTOCOL.md §16 connect, framing, join and leave cases over real WebSockets.

mod gateway_common;

use std::time::{Duration, Instant};

use gateway_common::*;
use serde_json::json;

#[tokio::test]
async fn case01_upgrade_ok_and_silent_until_client_speaks() {
    let s = TestGateway::start(fast_settings()).await;
    let mut c = s.client("2.0.0").await;
    c.silent(300).await;
}

#[tokio::test]
async fn case02_missing_api_key_after_backoff() {
    let mut settings = fast_settings();
    settings.connect_error_backoff = Duration::from_millis(300);
    let s = TestGateway::start(settings).await;
    let started = Instant::now();
    let (status, body) = s.refused("vsn=2.0.0", HOST, &[]).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(status, 401);
    assert_eq!(body, r#"{"error":"API key is missing"}"#);
}

#[tokio::test]
async fn case03_to_06_jwt_refusals() {
    let s = TestGateway::start(fast_settings()).await;
    let cases = [
        (
            "not-a-jwt".to_string(),
            401,
            "The token provided is not a valid JWT",
        ),
        (
            sign(json!({"role":"authenticated","exp":now()-1000}), SECRET),
            401,
            "Token has expired",
        ),
        (
            sign(json!({"exp":now()+1000}), SECRET),
            401,
            "Fields `role` and `exp` are required in JWT",
        ),
        (
            sign(json!({"role":"anon","exp":now()+1000}), "another-secret"),
            401,
            "Failed to validate JWT signature",
        ),
        (
            sign(json!({"role":"anon","exp":"soon"}), SECRET),
            500,
            "Error connecting to Realtime",
        ),
    ];
    for (token, want_status, want) in cases {
        let (status, body) = s
            .refused(&format!("apikey={token}&vsn=2.0.0"), HOST, &[])
            .await;
        assert_eq!(status, want_status, "{want}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body, json!({ "error": want }));
    }
}

#[tokio::test]
async fn case07_unknown_kid() {
    let mut tenant = realtime_server::gateway::TenantView::new(TENANT, SECRET);
    tenant.jwt_jwks = Some(json!({"keys":[]}));
    let s = TestGateway::start_with(fast_settings(), tenant).await;
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let token = format!(
        "{}.{}.c2ln",
        b64(json!({"alg":"RS256","typ":"JWT","kid":"k9"})),
        b64(json!({"role":"anon","exp":now()+100}))
    );
    let (status, body) = s
        .refused(&format!("apikey={token}&vsn=2.0.0"), HOST, &[])
        .await;
    assert_eq!(status, 401);
    assert!(body.contains(r#"(kid) \"k9\""#), "{body}");
}

#[tokio::test]
async fn case08_09_unknown_and_suspended_tenant() {
    let s = TestGateway::start(fast_settings()).await;
    let q = format!("apikey={}&vsn=2.0.0", token_ok());
    let (status, body) = s.refused(&q, "nope.localhost", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"Tenant not found"}"#)
    );
    s.update(|t| t.suspend = true);
    let (status, body) = s.refused(&q, HOST, &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (403, r#"{"error":"Realtime was disabled for this tenant"}"#)
    );
}

#[tokio::test]
async fn case10_bad_vsn_refused_at_once_with_empty_body() {
    let mut settings = fast_settings();
    settings.connect_error_backoff = Duration::from_secs(3);
    let s = TestGateway::start(settings).await;
    let started = Instant::now();
    let (status, body) = s
        .refused(&format!("apikey={}&vsn=3.0.0", token_ok()), HOST, &[])
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!((status, body.as_str()), (403, ""));
}

#[tokio::test]
async fn case11_header_token_wins_over_query() {
    let s = TestGateway::start(fast_settings()).await;
    let t = token_ok();
    let mut c = s
        .connect("apikey=garbage&vsn=2.0.0", HOST, &[("x-api-key", &t)])
        .await
        .expect("upgrade with header token");
    c.push(None, Some("1"), "phoenix", "heartbeat", json!({}))
        .await;
    assert_eq!(status(&c.recv().await), "ok");
}

#[tokio::test]
async fn case12_too_many_connected_users() {
    let s = TestGateway::start(fast_settings()).await;
    s.update(|t| t.limits.max_concurrent_users = 1);
    let mut a = s.client("2.0.0").await;
    a.join_ok("room1", "1", join_config(json!({}))).await;
    let (status, body) = s
        .refused(&format!("apikey={}&vsn=2.0.0", token_ok()), HOST, &[])
        .await;
    assert_eq!(
        (status, body.as_str()),
        (429, r#"{"error":"Too many connected users"}"#)
    );
    assert_eq!(s.gw.connected_count(TENANT), 1);
}

#[tokio::test]
async fn case13_16_heartbeat_both_serializers_and_garbage() {
    let s = TestGateway::start(fast_settings()).await;
    let mut c = s.client("2.0.0").await;
    c.send_text("hello").await;
    c.send_text(r#"[null,"5","phoenix","heartbeat",{}]"#).await;
    assert_eq!(
        c.recv().await,
        json!([null, "5", "phoenix", "phx_reply", {"status":"ok","response":{}}])
    );

    let mut v1 = s.client("1.0.0").await;
    v1.send_text(r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"5"}"#)
        .await;
    let r = v1.recv().await;
    assert_eq!(
        r,
        json!({"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"5","topic":"phoenix"})
    );
    assert!(r.get("join_ref").is_none());
}

#[tokio::test]
async fn case15_no_vsn_means_v1() {
    let s = TestGateway::start(fast_settings()).await;
    let mut c = s
        .connect(&format!("apikey={}", token_ok()), HOST, &[])
        .await
        .unwrap();
    c.send_text(r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"7"}"#)
        .await;
    let r = c.recv().await;
    assert!(r.is_object());
    assert_eq!(r["ref"], "7");
}

#[tokio::test]
async fn case17_19_unmatched_topics_and_unjoined_leave() {
    let s = TestGateway::start(fast_settings()).await;
    let mut c = s.client("2.0.0").await;
    c.push(None, Some("3"), "room1", "phx_join", json!({}))
        .await;
    assert_eq!(
        c.recv().await,
        json!([null,"3","room1","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}])
    );
    c.push(
        Some("1"),
        Some("4"),
        "realtime:x",
        "broadcast",
        json!({"type":"broadcast","event":"e","payload":{}}),
    )
    .await;
    assert_eq!(
        c.recv().await,
        json!([null,"4","realtime:x","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}])
    );
    c.push(Some("1"), Some("4"), "realtime:x", "phx_leave", json!({}))
        .await;
    assert_eq!(
        c.recv().await,
        json!(["1","4","realtime:x","phx_reply",{"status":"ok","response":{}}])
    );
}

#[tokio::test]
async fn case20_oversized_frame_closes_1009() {
    let s = TestGateway::start(fast_settings()).await;
    let mut c = s.client("2.0.0").await;
    let big = "x".repeat(5_000_001);
    c.send_text(&big).await;
    assert_eq!(c.closed().await, Some(1009));
}

#[tokio::test]
async fn case21_join_ok_and_nothing_else() {
    let s = TestGateway::start(fast_settings()).await;
    let mut c = s.client("2.0.0").await;
    let r = c.join("room1", "1", join_config(json!({}))).await;
    assert_eq!(
        r,
        json!(["1","1","realtime:room1","phx_reply",{"status":"ok","response":{"postgres_changes":[]}}])
    );
    c.silent(300).await;
}

#[tokio::test]
async fn case22_23_24_25_join_errors_and_tokens() {
    let mut settings = fast_settings();
    settings.channel_error_backoff = Duration::from_millis(300);
    let s = TestGateway::start(settings).await;
    let mut c = s.client("2.0.0").await;

    let started = Instant::now();
    c.push(
        Some("1"),
        Some("1"),
        "realtime:",
        "phx_join",
        join_config(json!({})),
    )
    .await;
    let r = c.recv().await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        payload(&r),
        &json!({"status":"error","response":{"reason":"TopicNameRequired: You must provide a topic name"}})
    );

    let mut p = join_config(json!({}));
    p["access_token"] = json!("potato");
    let r = c.join("a", "2", p).await;
    assert_eq!(
        payload(&r)["response"]["reason"],
        "MalformedJWT: The token provided is not a valid JWT"
    );

    let mut p = join_config(json!({}));
    p["access_token"] = json!(sign(json!({"role":"anon","exp":now()-30}), SECRET));
    let r = c.join("b", "3", p).await;
    let reason = payload(&r)["response"]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.starts_with("InvalidJWTToken: Token has expired "),
        "{reason}"
    );
    assert!(reason.ends_with(" seconds ago"), "{reason}");

    let mut p = join_config(json!({}));
    p["access_token"] = json!("sb_publishable_x");
    c.join_ok("c", "4", p).await;
}

#[tokio::test]
async fn case27_28_private_flags() {
    let s = TestGateway::start(fast_settings()).await;
    let mut c = s.client("2.0.0").await;
    c.join_ok("room1", "1", join_config(json!({"private":"yes"})))
        .await;
    s.update(|t| t.private_only = true);
    let r = c.join("room2", "2", join_config(json!({}))).await;
    assert_eq!(
        payload(&r)["response"]["reason"],
        "PrivateOnly: This project only allows private channels"
    );
}

#[tokio::test]
async fn case29_channels_per_client() {
    let s = TestGateway::start(fast_settings()).await;
    s.update(|t| t.limits.max_channels_per_client = 1);
    let mut c = s.client("2.0.0").await;
    c.join_ok("room1", "1", join_config(json!({}))).await;
    let r = c.join("room2", "2", join_config(json!({}))).await;
    assert_eq!(
        payload(&r)["response"]["reason"],
        "ChannelRateLimitReached: Too many channels"
    );
}

#[tokio::test]
async fn case30_duplicate_join_closes_old_channel() {
    let s = TestGateway::start(fast_settings()).await;
    let mut c = s.client("2.0.0").await;
    c.join_ok("room1", "1", join_config(json!({}))).await;
    let r = c.join("room1", "2", join_config(json!({}))).await;
    assert_eq!(r[0], "2");
    assert_eq!(r[1], "2");
    assert_eq!(status(&r), "ok");
    assert_eq!(
        c.recv().await,
        json!(["1", "1", "realtime:room1", "phx_close", {}])
    );
}

#[tokio::test]
async fn case31_32_bindings_echoed_with_ids() {
    let s = TestGateway::start(fast_settings()).await;
    let mut c = s.client("2.0.0").await;
    let b1 = json!({"event":"insert","schema":"public","table":"todos","extra":1});
    let b2 = json!({"event":"*","schema":"public","table":"other","filter":"id=eq.1"});
    let r = c
        .join(
            "room1",
            "1",
            join_config(json!({"postgres_changes":[b1, b2]})),
        )
        .await;
    let list = payload(&r)["response"]["postgres_changes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(list.len(), 2);
    for (got, sent) in list.iter().zip([&b1, &b2]) {
        let id = got["id"].as_u64().expect("integer id");
        assert!(id > 0);
        let mut without = got.clone();
        without.as_object_mut().unwrap().remove("id");
        assert_eq!(&without, sent);
    }
    // Without a change pipeline the channel is told the subscription failed.
    let sys = c.recv().await;
    assert_eq!(event(&sys), "system");
    assert_eq!(payload(&sys)["extension"], "postgres_changes");
    assert_eq!(payload(&sys)["status"], "error");
    assert_eq!(sys[0], "1");
}

#[tokio::test]
async fn case33_replay_on_public_channel() {
    let s = TestGateway::start(fast_settings()).await;
    let mut c = s.client("2.0.0").await;
    let r = c
        .join(
            "room1",
            "1",
            json!({"config":{"broadcast":{"replay":{"since":0,"limit":5}}}}),
        )
        .await;
    assert_eq!(
        payload(&r)["response"]["reason"],
        "UnableToReplayMessages: Replay is not allowed for public channels"
    );
}

#[tokio::test]
async fn case35_36_leave_then_no_delivery() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    let mut b = s.client("2.0.0").await;
    a.join_ok("room1", "1", join_config(json!({}))).await;
    b.join_ok("room1", "1", join_config(json!({}))).await;
    a.push(
        Some("1"),
        Some("9"),
        "realtime:room1",
        "phx_leave",
        json!({}),
    )
    .await;
    assert_eq!(
        a.recv().await,
        json!(["1","9","realtime:room1","phx_reply",{"status":"ok","response":{}}])
    );
    assert_eq!(
        a.recv().await,
        json!(["1", "1", "realtime:room1", "phx_close", {}])
    );
    b.push(
        Some("1"),
        Some("2"),
        "realtime:room1",
        "broadcast",
        json!({"type":"broadcast","event":"e","payload":{}}),
    )
    .await;
    a.silent(300).await;
}

#[tokio::test]
async fn case37_stale_join_ref_is_accepted() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    let mut b = s.client("2.0.0").await;
    a.join_ok(
        "room1",
        "1",
        join_config(json!({"broadcast":{"ack":true,"self":false}})),
    )
    .await;
    b.join_ok("room1", "1", join_config(json!({}))).await;
    let msg = json!({"type":"broadcast","event":"e","payload":{"n":1}});
    a.push(
        Some("99"),
        Some("2"),
        "realtime:room1",
        "broadcast",
        msg.clone(),
    )
    .await;
    assert_eq!(
        a.recv().await,
        json!(["1","2","realtime:room1","phx_reply",{"status":"ok","response":{}}])
    );
    assert_eq!(
        b.recv().await,
        json!([null, null, "realtime:room1", "broadcast", msg])
    );
    a.push(None, Some("3"), "realtime:room1", "broadcast", msg.clone())
        .await;
    assert_eq!(a.recv().await[1], "3");
    assert_eq!(event(&b.recv().await), "broadcast");
}

#[tokio::test]
async fn case72_74_unknown_event_and_null_join_ref_leave() {
    let s = TestGateway::start(fast_settings()).await;
    let mut c = s.client("2.0.0").await;
    c.join_ok("room1", "1", join_config(json!({}))).await;
    c.push(
        Some("1"),
        Some("5"),
        "realtime:room1",
        "whatever",
        json!({}),
    )
    .await;
    c.push(None, Some("9"), "realtime:room1", "phx_leave", json!({}))
        .await;
    c.silent(300).await;
    // Still joined: a leave with the right join ref is answered.
    c.push(
        Some("1"),
        Some("10"),
        "realtime:room1",
        "phx_leave",
        json!({}),
    )
    .await;
    assert_eq!(c.recv().await[1], "10");
}

#[tokio::test]
async fn idle_socket_is_closed_1000() {
    let mut settings = fast_settings();
    settings.idle_timeout = Duration::from_millis(300);
    let s = TestGateway::start(settings).await;
    let mut c = s.client("2.0.0").await;
    assert_eq!(c.closed().await, Some(1000));
}

#[tokio::test]
async fn non_get_is_400() {
    let s = TestGateway::start(fast_settings()).await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"POST /socket/websocket HTTP/1.1\r\nHost: realtime-dev.localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 400"));
}

#[tokio::test]
async fn disconnect_tenant_sends_system_then_1012() {
    let s = TestGateway::start(fast_settings()).await;
    let mut c = s.client("2.0.0").await;
    c.join_ok("room1", "1", join_config(json!({}))).await;
    s.gw.disconnect_tenant(TENANT).await;
    assert_eq!(
        c.recv().await,
        json!([null,null,"realtime:room1","system",{"extension":"system","message":"Server requested disconnect","status":"ok"}])
    );
    assert_eq!(c.closed().await, Some(1012));
}

#[tokio::test]
async fn sockets_without_channels_after_a_join_are_swept() {
    let mut settings = fast_settings();
    settings.no_channel_timeout = Duration::from_millis(200);
    let s = TestGateway::start(settings).await;
    let mut idle = s.client("2.0.0").await;
    let mut left = s.client("2.0.0").await;
    left.join_ok("room1", "1", join_config(json!({}))).await;
    left.push(
        Some("1"),
        Some("2"),
        "realtime:room1",
        "phx_leave",
        json!({}),
    )
    .await;
    assert_eq!(status(&left.recv().await), "ok");
    assert_eq!(event(&left.recv().await), "phx_close");
    // Dropped without a close frame.
    match left.next_within(2000).await {
        Seen::Closed(code) => assert_eq!(code, None),
        other => panic!("expected the socket to be dropped, got {other:?}"),
    }
    // A socket that never joined is left alone.
    idle.push(None, Some("1"), "phoenix", "heartbeat", json!({}))
        .await;
    assert_eq!(status(&idle.recv().await), "ok");
}

#[tokio::test]
async fn shutdown_closes_1012_and_refuses_joins() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    let mut b = s.client("2.0.0").await;
    a.join_ok("room1", "1", join_config(json!({}))).await;
    b.push(None, Some("1"), "phoenix", "heartbeat", json!({}))
        .await;
    assert_eq!(status(&b.recv().await), "ok");
    s.gw.shutdown();
    assert_eq!(a.closed().await, Some(1012));
    assert_eq!(b.closed().await, Some(1012));
    let mut c = s.client("2.0.0").await;
    let r = c.join("room1", "1", join_config(json!({}))).await;
    assert_eq!(
        payload(&r)["response"]["reason"],
        "RealtimeRestarting: Realtime is restarting, please standby"
    );
}

#[tokio::test]
async fn join_after_tenant_removal_closes_1001() {
    let s = TestGateway::start(fast_settings()).await;
    let mut c = s.client("2.0.0").await;
    s.tenants.remove(TENANT);
    let r = c.join("room1", "1", join_config(json!({}))).await;
    assert_eq!(
        payload(&r)["response"]["reason"],
        "TenantNotFound: Tenant with the given ID does not exist"
    );
    assert_eq!(c.closed().await, Some(1001));
}

/// A topic over 1 KiB is refused; a flood of refused joins keeps only a few delayed replies
/// (each a sleeping task) per socket and answers the rest at once.
#[tokio::test]
async fn long_topics_are_refused_and_refusal_floods_hold_no_tasks() {
    let mut settings = fast_settings();
    settings.channel_error_backoff = Duration::from_secs(5);
    let s = TestGateway::start(settings).await;
    let mut c = s.client("2.0.0").await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let long = format!("realtime:{}", "x".repeat(100_000));
    for i in 0..200 {
        c.push(
            Some(&i.to_string()),
            Some(&i.to_string()),
            &long,
            "phx_join",
            join_config(json!({})),
        )
        .await;
    }
    // Past the delayed ones, every refusal arrives at once, with its reason.
    for _ in 0..(200 - 16) {
        let r = c.recv().await;
        assert_eq!(
            payload(&r)["response"]["reason"],
            "TopicNameTooLong: Topic names are limited to 1024 bytes"
        );
    }
    let after = metrics.num_alive_tasks();
    assert!(after <= before + 16, "alive tasks {before} -> {after}");
}

/// A tenant suspended while a socket is connected refuses the socket's next joins, as upstream.
#[tokio::test]
async fn joins_after_a_suspension_are_refused() {
    let s = TestGateway::start(fast_settings()).await;
    let mut c = s.client("2.0.0").await;
    c.join_ok("room1", "1", join_config(json!({}))).await;
    s.update(|t| t.suspend = true);
    let r = c.join("room2", "2", join_config(json!({}))).await;
    assert_eq!(
        payload(&r)["response"]["reason"],
        "RealtimeDisabledForTenant: Realtime disabled for this tenant"
    );
}

/// Log lines written by the server, captured in memory.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;
    fn make_writer(&'a self) -> LogBuffer {
        self.clone()
    }
}

impl LogBuffer {
    fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

#[tokio::test]
async fn log_level_sets_the_sockets_own_log_threshold() {
    let logs = LogBuffer::default();
    tracing::subscriber::set_global_default(realtime_server::logging::subscriber(
        realtime_server::config::LogLevel::Info,
        logs.clone(),
    ))
    .unwrap();
    let s = TestGateway::start(fast_settings()).await;
    let expired = sign(json!({"role":"anon","exp":now()-30}), SECRET);
    // Three refusals per socket: an error (no topic), a warning (expired token) and an info
    // line (topic over the length limit), on topics naming the socket's log_level.
    for level in ["none", "error", "warning", "info", "debug"] {
        let q = if level == "none" {
            format!("apikey={}&vsn=2.0.0", token_ok())
        } else {
            format!("apikey={}&vsn=2.0.0&log_level={level}", token_ok())
        };
        let mut c = s.connect(&q, HOST, &[]).await.unwrap();
        c.push(Some("1"), Some("1"), "realtime:", "phx_join", json!({}))
            .await;
        let mut p = join_config(json!({}));
        p["access_token"] = json!(expired);
        let r = c.join(&format!("lvl-{level}-expired"), "2", p).await;
        assert_eq!(status(&r), "error");
        let long = format!("lvl-{level}-long-{}", "x".repeat(1100));
        let r = c.join(&long, "3", join_config(json!({}))).await;
        assert_eq!(status(&r), "error");
        assert_eq!(status(&c.recv().await), "error");
    }
    let required = logs.lines_with("TopicNameRequired");
    assert!(required.len() >= 5, "{required:?}");
    assert!(required.iter().all(|l| l.contains("[error] join refused")));
    for (level, warns, infos) in [
        ("none", false, false),
        ("error", false, false),
        ("warning", true, false),
        ("info", true, true),
        // Not one of upstream's three values: the default.
        ("debug", false, false),
    ] {
        let w = logs.lines_with(&format!("topic=realtime:lvl-{level}-expired "));
        assert_eq!(w.len(), usize::from(warns), "{level}: {w:?}");
        assert!(w.iter().all(|l| l.contains("[warning] join refused")));
        let i = logs.lines_with(&format!("topic=realtime:lvl-{level}-long-"));
        assert_eq!(i.len(), usize::from(infos), "{level}: {i:?}");
        assert!(i.iter().all(|l| l.contains("[info] join refused")));
    }
}

#[tokio::test]
async fn invalid_utf8_text_frame_closes_1007() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::Message;

    let s = TestGateway::start(fast_settings()).await;
    let mut other = s.client("2.0.0").await;
    other.join_ok("room1", "1", join_config(json!({}))).await;
    let mut c = s.client("2.0.0").await;
    c.join_ok("room1", "1", join_config(json!({}))).await;
    // A heartbeat whose ref holds a lone continuation byte.
    let mut bytes = br#"[null,"1","phoenix","heartbeat",{"x":""#.to_vec();
    bytes.extend_from_slice(&[0x80]);
    bytes.extend_from_slice(br#""}]"#);
    let frame = Frame::message(bytes, OpCode::Data(Data::Text), true);
    c.ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(c.closed().await, Some(1007));
    // The other socket of the topic is unaffected.
    other
        .push(Some("1"), Some("2"), "phoenix", "heartbeat", json!({}))
        .await;
    assert_eq!(status(&other.recv().await), "ok");
}
