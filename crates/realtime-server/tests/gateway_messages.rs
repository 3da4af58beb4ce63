//! PROTOCOL.md §16 broadcast, presence and token cases over real WebSockets, in both
//! serializers.

mod gateway_common;

use gateway_common::*;
use serde_json::{json, Value};

fn bcast(n: i64) -> Value {
    json!({"type":"broadcast","event":"e","payload":{"n":n}})
}

#[tokio::test]
async fn case38_39_40_broadcast_self_and_ack() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    let mut b = s.client("2.0.0").await;
    a.join_ok("room1", "1", join_config(json!({}))).await;
    b.join_ok("room1", "1", join_config(json!({}))).await;
    a.push(
        Some("1"),
        Some("2"),
        "realtime:room1",
        "broadcast",
        bcast(1),
    )
    .await;
    assert_eq!(
        b.recv().await,
        json!([null, null, "realtime:room1", "broadcast", bcast(1)])
    );
    a.silent(200).await;

    let mut c = s.client("2.0.0").await;
    c.join_ok(
        "room1",
        "1",
        join_config(json!({"broadcast":{"self":true,"ack":true}})),
    )
    .await;
    c.push(
        Some("1"),
        Some("2"),
        "realtime:room1",
        "broadcast",
        bcast(2),
    )
    .await;
    let mut got = [c.recv().await, c.recv().await];
    got.sort_by_key(|f| event(f).to_string());
    assert_eq!(
        got[0],
        json!([null, null, "realtime:room1", "broadcast", bcast(2)])
    );
    assert_eq!(
        got[1],
        json!(["1","2","realtime:room1","phx_reply",{"status":"ok","response":{}}])
    );
    assert_eq!(event(&a.recv().await), "broadcast");
    assert_eq!(event(&b.recv().await), "broadcast");
}

#[tokio::test]
async fn case41_kind3_fans_out_as_kind4_and_v1_json() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    let mut b = s.client("2.0.0").await;
    let mut c = s.client("1.0.0").await;
    a.join_ok("room1", "3", join_config(json!({}))).await;
    b.join_ok("room1", "1", join_config(json!({}))).await;
    c.join_ok("room1", "1", join_config(json!({}))).await;
    a.send_binary(kind3(
        "3",
        "7",
        "realtime:room1",
        "cursor",
        1,
        br#"{"x":1}"#,
    ))
    .await;
    assert_eq!(
        b.recv_binary().await,
        kind4("realtime:room1", "cursor", 1, br#"{"x":1}"#)
    );
    assert_eq!(
        c.recv().await,
        json!({"event":"broadcast","payload":{"event":"cursor","payload":{"x":1},"type":"broadcast"},"ref":null,"topic":"realtime:room1"})
    );
    a.silent(200).await;
}

#[tokio::test]
async fn case42_binary_payload_not_sent_to_v1() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    let mut b = s.client("2.0.0").await;
    let mut c = s.client("1.0.0").await;
    a.join_ok("room1", "1", join_config(json!({}))).await;
    b.join_ok("room1", "1", join_config(json!({}))).await;
    c.join_ok("room1", "1", join_config(json!({}))).await;
    a.send_binary(kind3("1", "2", "realtime:room1", "bin", 0, &[0xDE, 0xAD]))
        .await;
    assert_eq!(
        b.recv_binary().await,
        kind4("realtime:room1", "bin", 0, &[0xDE, 0xAD])
    );
    c.silent(300).await;
    // A JSON broadcast still reaches the vsn 1.0.0 receiver.
    a.push(
        Some("1"),
        Some("3"),
        "realtime:room1",
        "broadcast",
        bcast(1),
    )
    .await;
    assert_eq!(
        c.recv().await,
        json!({"event":"broadcast","payload":bcast(1),"ref":null,"topic":"realtime:room1"})
    );
}

#[tokio::test]
async fn case43_oversized_payload_rejected() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    let mut b = s.client("2.0.0").await;
    a.join_ok("room1", "1", join_config(json!({"broadcast":{"ack":true}})))
        .await;
    b.join_ok("room1", "1", join_config(json!({}))).await;
    let big = "x".repeat(3_100_000);
    a.push(
        Some("1"),
        Some("2"),
        "realtime:room1",
        "broadcast",
        json!({"type":"broadcast","event":"e","payload":{"s":big}}),
    )
    .await;
    assert_eq!(
        a.recv().await,
        json!(["1","2","realtime:room1","phx_reply",{"status":"error","response":"payload_size_exceeded"}])
    );
    b.silent(300).await;
}

#[tokio::test]
async fn case45_tenant_and_privacy_isolation() {
    let s = TestGateway::start(fast_settings()).await;
    s.tenants
        .put(realtime_server::gateway::TenantView::new("other", SECRET));
    let mut a = s.client("2.0.0").await;
    let mut other = s
        .connect(
            &format!("apikey={}&vsn=2.0.0", token_ok()),
            "other.localhost",
            &[],
        )
        .await
        .unwrap();
    let mut b = s.client("2.0.0").await;
    a.join_ok("room1", "1", join_config(json!({}))).await;
    other.join_ok("room1", "1", join_config(json!({}))).await;
    // A public channel named like a private topic is still the public namespace.
    b.join_ok("private:room1", "1", join_config(json!({})))
        .await;
    a.push(
        Some("1"),
        Some("2"),
        "realtime:room1",
        "broadcast",
        bcast(1),
    )
    .await;
    other.silent(300).await;
    b.silent(10).await;
}

#[tokio::test]
async fn case48_49_presence_state_on_join() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    a.join_ok(
        "room1",
        "1",
        join_config(json!({"presence":{"key":"","enabled":true}})),
    )
    .await;
    assert_eq!(
        a.recv().await,
        json!(["1", null, "realtime:room1", "presence_state", {}])
    );
    let mut b = s.client("2.0.0").await;
    b.join_ok("room1", "1", join_config(json!({}))).await;
    b.silent(300).await;
}

fn track(meta: Value) -> Value {
    json!({"type":"presence","event":"track","payload":meta})
}

#[tokio::test]
async fn case50_to_57_presence_flow() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    let mut watcher = s.client("1.0.0").await;
    a.join_ok(
        "room1",
        "1",
        join_config(json!({"presence":{"key":"k","enabled":true}})),
    )
    .await;
    assert_eq!(event(&a.recv().await), "presence_state");
    watcher.join_ok("room1", "1", join_config(json!({}))).await;

    // 50: first track → ok and a join diff to everyone, presence off included.
    a.push(
        Some("1"),
        Some("2"),
        "realtime:room1",
        "presence",
        track(json!({"u":"a"})),
    )
    .await;
    assert_eq!(
        a.recv().await,
        json!(["1","2","realtime:room1","phx_reply",{"status":"ok","response":{}}])
    );
    let d = a.recv().await;
    assert_eq!(
        d.as_array().unwrap()[..4],
        json!([null, null, "realtime:room1", "presence_diff"])
            .as_array()
            .unwrap()[..]
    );
    let meta = &d[4]["joins"]["k"]["metas"][0];
    assert_eq!(meta["u"], "a");
    let r1 = meta["phx_ref"]
        .as_str()
        .expect("string phx_ref")
        .to_string();
    assert_eq!(d[4]["leaves"], json!({}));
    let wd = watcher.recv().await;
    assert_eq!(wd["event"], "presence_diff");
    assert_eq!(wd["payload"], d[4]);

    // 51: same meta → ok, no diff.
    a.push(
        Some("1"),
        Some("3"),
        "realtime:room1",
        "presence",
        track(json!({"u":"a"})),
    )
    .await;
    assert_eq!(status(&a.recv().await), "ok");
    watcher.silent(200).await;

    // 52: update → one diff with phx_ref_prev and the old meta leaving.
    a.push(
        Some("1"),
        Some("4"),
        "realtime:room1",
        "presence",
        track(json!({"u":"b"})),
    )
    .await;
    assert_eq!(status(&a.recv().await), "ok");
    let d = watcher.recv().await["payload"].clone();
    assert_eq!(d["joins"]["k"]["metas"][0]["u"], "b");
    assert_eq!(d["joins"]["k"]["metas"][0]["phx_ref_prev"], r1.as_str());
    assert_eq!(d["leaves"]["k"]["metas"][0], json!({"u":"a","phx_ref":r1}));

    // 57: a later joiner sees k in its state.
    let mut late = s.client("2.0.0").await;
    late.join_ok(
        "room1",
        "1",
        join_config(json!({"presence":{"enabled":true}})),
    )
    .await;
    let st = late.recv().await;
    assert_eq!(event(&st), "presence_state");
    assert_eq!(st[4]["k"]["metas"][0]["u"], "b");

    // 54: non-map meta → error reply, still joined.
    a.push(
        Some("1"),
        Some("5"),
        "realtime:room1",
        "presence",
        json!({"type":"presence","event":"track","payload":"x"}),
    )
    .await;
    let mut r = a.recv().await;
    while event(&r) == "presence_diff" {
        r = a.recv().await;
    }
    assert_eq!(
        r,
        json!(["1","5","realtime:room1","phx_reply",{"status":"error","response":{"reason":"Presence track payload must be a map"}}])
    );

    // 53: untrack → leave diff.
    a.push(
        Some("1"),
        Some("6"),
        "realtime:room1",
        "presence",
        json!({"type":"presence","event":"untrack"}),
    )
    .await;
    assert_eq!(status(&a.recv().await), "ok");
    let d = watcher.recv().await["payload"].clone();
    assert_eq!(d["joins"], json!({}));
    assert_eq!(d["leaves"]["k"]["metas"][0]["u"], "b");

    // 56: a tracked presence leaves when its socket goes away.
    a.push(
        Some("1"),
        Some("7"),
        "realtime:room1",
        "presence",
        track(json!({"u":"c"})),
    )
    .await;
    assert_eq!(
        watcher.recv().await["payload"]["joins"]["k"]["metas"][0]["u"],
        "c"
    );
    drop(a);
    let d = watcher.recv().await["payload"].clone();
    assert_eq!(d["leaves"]["k"]["metas"][0]["u"], "c");
}

#[tokio::test]
async fn case55_client_presence_window() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    a.join_ok("room1", "1", join_config(json!({}))).await;
    for i in 0..5 {
        a.push(
            Some("1"),
            Some(&format!("r{i}")),
            "realtime:room1",
            "presence",
            track(json!({"i":i})),
        )
        .await;
        assert_eq!(status(&a.recv().await), "ok");
        assert_eq!(event(&a.recv().await), "presence_diff");
    }
    a.push(
        Some("1"),
        Some("r5"),
        "realtime:room1",
        "presence",
        track(json!({"i":5})),
    )
    .await;
    assert_eq!(
        a.recv().await,
        json!(["1",null,"realtime:room1","system",{"channel":"room1","extension":"system","message":"Client presence rate limit exceeded","status":"error"}])
    );
    assert_eq!(
        a.recv().await,
        json!(["1", "1", "realtime:room1", "phx_close", {}])
    );
}

#[tokio::test]
async fn case58_59_62_access_token_events() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    a.join_ok("room1", "1", join_config(json!({}))).await;
    let fresh = sign(json!({"role":"authenticated","exp":now()+7200}), SECRET);
    a.push(
        Some("1"),
        Some("2"),
        "realtime:room1",
        "access_token",
        json!({"access_token":fresh}),
    )
    .await;
    a.push(
        Some("1"),
        Some("3"),
        "realtime:room1",
        "access_token",
        json!({"access_token":"sb_x"}),
    )
    .await;
    a.silent(300).await;
    a.push(
        Some("1"),
        Some("4"),
        "realtime:room1",
        "access_token",
        json!({"access_token":""}),
    )
    .await;
    assert_eq!(
        a.recv().await,
        json!(["1",null,"realtime:room1","system",{"channel":"room1","extension":"system","message":"The token provided is not a valid JWT","status":"error"}])
    );
    assert_eq!(
        a.recv().await,
        json!(["1", "1", "realtime:room1", "phx_close", {}])
    );
}

/// Sends an `access_token` refresh on `room1` joined as "1".
async fn refresh(a: &mut Client, token: &str) {
    a.push(
        Some("1"),
        None,
        "realtime:room1",
        "access_token",
        json!({ "access_token": token }),
    )
    .await;
}

/// A flood of `access_token` refreshes: a few per second are verified, the rest ignored, and
/// re-arming the expiry timer cancels the previous one (no sleeping task per refresh).
#[tokio::test]
async fn access_token_floods_are_cut_per_second_and_leave_no_timers() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    a.join_ok("room1", "1", join_config(json!({}))).await;
    a.silent(100).await;
    let tokens: Vec<String> = (0..200)
        .map(|i| {
            sign(
                json!({"role":"authenticated","exp":now()+3600,"n":i}),
                SECRET,
            )
        })
        .collect();
    let expired = sign(json!({"role":"authenticated","exp":now()-10}), SECRET);
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    for t in &tokens {
        refresh(&mut a, t).await;
    }
    // Beyond the allowance within the same second: not even verified, the channel stays.
    refresh(&mut a, &expired).await;
    a.silent(300).await;
    let after = metrics.num_alive_tasks();
    assert!(after <= before + 1, "alive tasks {before} -> {after}");
    // A second later the allowance is back and the expired token is refused.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    refresh(&mut a, &expired).await;
    let sys = a.recv().await;
    assert!(
        sys[4]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Token has expired "),
        "{sys}"
    );
    assert_eq!(event(&a.recv().await), "phx_close");
}

#[tokio::test]
async fn case60_61_refused_refresh_tokens() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    a.join_ok("room1", "1", join_config(json!({}))).await;
    a.join_ok("room2", "2", join_config(json!({}))).await;
    let expired = sign(json!({"role":"authenticated","exp":now()-10}), SECRET);
    a.push(
        Some("1"),
        Some("3"),
        "realtime:room1",
        "access_token",
        json!({"access_token":expired}),
    )
    .await;
    let sys = a.recv().await;
    let msg = sys[4]["message"].as_str().unwrap();
    assert!(msg.starts_with("Token has expired "), "{msg}");
    assert_eq!(event(&a.recv().await), "phx_close");
    let no_role = sign(json!({"exp":now()+100}), SECRET);
    a.push(
        Some("2"),
        Some("4"),
        "realtime:room2",
        "access_token",
        json!({"access_token":no_role}),
    )
    .await;
    assert_eq!(
        a.recv().await[4]["message"],
        "Fields `role` and `exp` are required in JWT"
    );
    assert_eq!(
        a.recv().await,
        json!(["2", "2", "realtime:room2", "phx_close", {}])
    );
}

#[tokio::test]
async fn case63_channel_closes_when_token_lapses() {
    let s = TestGateway::start(fast_settings()).await;
    let mut a = s.client("2.0.0").await;
    let mut p = join_config(json!({}));
    p["access_token"] = json!(sign(json!({"role":"authenticated","exp":now()+2}), SECRET));
    a.join_ok("room1", "1", p).await;
    let sys = match a.next_within(3500).await {
        Seen::Text(v) => v,
        other => panic!("expected the expiry message, got {other:?}"),
    };
    let msg = sys[4]["message"].as_str().unwrap();
    assert!(
        msg == "Token has expired 0 seconds ago" || msg == "Token has expired 1 seconds ago",
        "{msg}"
    );
    assert_eq!(event(&a.recv().await), "phx_close");
}

#[tokio::test]
async fn replication_ready_opt_in_times_out_without_replication() {
    let mut settings = fast_settings();
    settings.replication_ready_timeout = std::time::Duration::from_millis(300);
    let s = TestGateway::start(settings).await;
    let mut a = s.client("2.0.0").await;
    a.join_ok(
        "room1",
        "1",
        join_config(json!({"broadcast":{"replication_ready":"false"}})),
    )
    .await;
    assert_eq!(
        a.recv().await,
        json!(["1",null,"realtime:room1","system",{"channel":"room1","extension":"system","message":"Replication connection was not established in time","status":"error"}])
    );
    assert_eq!(event(&a.recv().await), "phx_close");
    let mut b = s.client("2.0.0").await;
    b.join_ok(
        "room1",
        "1",
        join_config(json!({"broadcast":{"replication_ready":false}})),
    )
    .await;
    b.silent(600).await;
}

#[tokio::test]
async fn concurrent_tracks_all_reach_watchers() {
    let s = TestGateway::start(fast_settings()).await;
    s.update(|t| t.limits.max_joins_per_second = 100_000);
    let mut watcher = s.client("2.0.0").await;
    watcher
        .join_ok(
            "room1",
            "1",
            join_config(json!({"presence":{"enabled":true}})),
        )
        .await;
    assert_eq!(event(&watcher.recv().await), "presence_state");
    let mut clients = Vec::new();
    for i in 0..20 {
        let mut c = s.client("2.0.0").await;
        c.join_ok(
            "room1",
            "1",
            join_config(json!({"presence":{"key":format!("k{i}")}})),
        )
        .await;
        clients.push(c);
    }
    for c in clients.iter_mut() {
        c.push(
            Some("1"),
            Some("2"),
            "realtime:room1",
            "presence",
            track(json!({"on":true})),
        )
        .await;
    }
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 20 {
        let f = watcher.recv().await;
        assert_eq!(event(&f), "presence_diff");
        assert_eq!(f[4]["leaves"], json!({}));
        for k in f[4]["joins"].as_object().unwrap().keys() {
            assert!(seen.insert(k.clone()), "{k} joined twice");
        }
    }
    watcher.silent(200).await;
}

#[tokio::test]
async fn oversized_track_and_tenant_presence_rate_stop_the_channel() {
    let s = TestGateway::start(fast_settings()).await;
    s.update(|t| t.limits.max_payload_size_in_kb = 1);
    let mut a = s.client("1.0.0").await;
    a.join_ok("room1", "1", join_config(json!({}))).await;
    let big = "x".repeat(2000);
    a.push(
        Some("1"),
        Some("2"),
        "realtime:room1",
        "presence",
        track(json!({"b":big})),
    )
    .await;
    let sys = a.recv().await;
    assert_eq!(sys["event"], "system");
    assert_eq!(sys["payload"]["message"], "Track message size exceeded");
    assert!(sys.get("join_ref").is_none());
    assert_eq!(a.recv().await["event"], "phx_close");

    s.update(|t| t.limits.max_presence_events_per_second = 1);
    let mut b = s.client("2.0.0").await;
    b.join_ok("room2", "1", join_config(json!({}))).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut i = 0;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "presence limiter never triggered"
        );
        b.push(
            Some("1"),
            Some("t"),
            "realtime:room2",
            "presence",
            track(json!({"i":i})),
        )
        .await;
        i += 1;
        let f = b.recv().await;
        if event(&f) == "system" {
            assert_eq!(f[4]["message"], "Too many presence messages per second");
            assert_eq!(event(&b.recv().await), "phx_close");
            break;
        }
        // ok reply, then our own diff
        assert_eq!(status(&f), "ok");
        assert_eq!(event(&b.recv().await), "presence_diff");
        if i == 4 {
            // Stay under the client window of 5 by re-joining.
            b.join_ok("room2", "2", join_config(json!({}))).await;
            assert_eq!(event(&b.recv().await), "phx_close");
        }
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    }
}
