//! Private channels authorised by RLS policies on `realtime.messages` in a real tenant
//! database (PROTOCOL.md §11; §16 cases 26, 34, 44, 46, 64), through the whole server: seeded
//! tenant, registry, tenant migrations and the gateway's routes.

mod gateway_common;
mod support;

use std::time::{Duration, Instant};

use gateway_common::{event, join_config, payload, status, Client, Seen};
use serde_json::json;
use support::{now, sign, wait_messages_partitioned, TestServer, JWT_SECRET};

/// Creating a logical slot waits for every transaction running in the cluster, which on a
/// loaded machine (other tests migrating their databases) can take tens of seconds.
const REPLICATION_START_WAIT_MS: u64 = 120_000;

async fn connect(server: &TestServer, token: &str) -> Client {
    Client {
        ws: server.socket(token, "2.0.0").await,
        v2: true,
    }
}

fn user_token(role: &str) -> String {
    sign(
        &json!({"role": role, "exp": now() + 3600, "sub": "u1"}),
        JWT_SECRET,
    )
}

/// A server over a fresh database whose seeded tenant's `realtime` schema is migrated, with
/// policies: `authenticated` reads every topic and writes only `room1`.
async fn server_with_policies() -> TestServer {
    // Replication slot names are cluster-wide: each server gets its own suffix.
    let suffix = format!("t{}", uuid::Uuid::new_v4().simple());
    let server = TestServer::with_db(&[
        ("CHANNEL_ERROR_BACKOFF_MS", "50"),
        ("CONNECT_ERROR_BACKOFF_MS", "50"),
        ("SLOT_NAME_SUFFIX", &suffix),
    ])
    .await;
    let db = server.db.as_ref().unwrap().connect().await;
    wait_messages_partitioned(&db).await;
    db.batch_execute(
        "create policy read_all on realtime.messages for select to authenticated using (true);
         create policy write_room1 on realtime.messages for insert to authenticated
           with check (realtime.topic() = 'room1');",
    )
    .await
    .unwrap();
    server
}

/// [`server_with_policies`], where reading the topic `slow` takes `sleep` (a boolean
/// expression that waits) and every other topic stays readable.
async fn server_with_slow_topic(sleep: &str) -> TestServer {
    let server = server_with_policies().await;
    let db = server.db.as_ref().unwrap().connect().await;
    db.batch_execute(&format!(
        "drop policy read_all on realtime.messages;
         create policy read_unless_slow on realtime.messages for select to authenticated
           using (case when realtime.topic() = 'slow' then {sleep} else true end);"
    ))
    .await
    .unwrap();
    server
}

/// Asks to join the private topic `slow` (join ref and ref `1`) without waiting for the reply.
async fn join_slow(c: &mut Client) {
    c.push(
        Some("1"),
        Some("1"),
        "realtime:slow",
        "phx_join",
        private(json!({})),
    )
    .await;
}

fn private(extra: serde_json::Value) -> serde_json::Value {
    let mut cfg = json!({"private": true});
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    join_config(cfg)
}

#[tokio::test]
async fn private_channels_follow_policies() {
    let server = server_with_policies().await;

    // 26: a role with no policy cannot join (the string "true" counts as true).
    let mut anon = connect(&server, &user_token("anon")).await;
    let r = anon
        .join("room1", "1", join_config(json!({"private": "true"})))
        .await;
    assert_eq!(
        payload(&r)["response"]["reason"],
        "Unauthorized: You do not have permissions to read from this Channel topic: room1"
    );

    // 44: public and private room1 are separate streams.
    let mut a = connect(&server, &user_token("authenticated")).await;
    let mut b = connect(&server, &user_token("authenticated")).await;
    let mut p = connect(&server, &user_token("authenticated")).await;
    a.join_ok("room1", "1", private(json!({"broadcast":{"ack":true}})))
        .await;
    b.join_ok("room1", "1", private(json!({}))).await;
    p.join_ok("room1", "1", join_config(json!({}))).await;
    let msg = json!({"type":"broadcast","event":"e","payload":{"n":1}});
    a.push(
        Some("1"),
        Some("2"),
        "realtime:room1",
        "broadcast",
        msg.clone(),
    )
    .await;
    assert_eq!(status(&a.recv().await), "ok");
    assert_eq!(
        b.recv().await,
        json!([null, null, "realtime:room1", "broadcast", msg])
    );
    p.silent(200).await;
    p.push(
        Some("1"),
        Some("3"),
        "realtime:room1",
        "broadcast",
        msg.clone(),
    )
    .await;
    a.silent(200).await;
    b.silent(10).await;

    // 46: read but no write: no ack, no delivery.
    let mut ro1 = connect(&server, &user_token("authenticated")).await;
    let mut ro2 = connect(&server, &user_token("authenticated")).await;
    ro1.join_ok("ro", "1", private(json!({"broadcast":{"ack":true}})))
        .await;
    ro2.join_ok("ro", "1", private(json!({}))).await;
    ro1.push(
        Some("1"),
        Some("2"),
        "realtime:ro",
        "broadcast",
        msg.clone(),
    )
    .await;
    ro1.silent(300).await;
    ro2.silent(10).await;

    // Presence on a private channel: write allowed on room1, denied on ro.
    a.push(
        Some("1"),
        Some("4"),
        "realtime:room1",
        "presence",
        json!({"type":"presence","event":"track","payload":{"u":1}}),
    )
    .await;
    assert_eq!(status(&a.recv().await), "ok");
    ro1.push(
        Some("1"),
        Some("3"),
        "realtime:ro",
        "presence",
        json!({"type":"presence","event":"track","payload":{"u":1}}),
    )
    .await;
    assert_eq!(
        ro1.recv().await,
        json!(["1","3","realtime:ro","phx_reply",{"status":"error","response":{}}])
    );

    // 64: a refreshed token whose role fails the read policy stops the channel.
    b.push(
        Some("1"),
        Some("5"),
        "realtime:room1",
        "access_token",
        json!({"access_token": user_token("anon")}),
    )
    .await;
    let mut f = b.recv().await;
    while event(&f) == "presence_diff" {
        f = b.recv().await;
    }
    assert_eq!(
        f,
        json!(["1",null,"realtime:room1","system",{"channel":"room1","extension":"system","message":"You do not have permissions to read from this Channel topic: room1","status":"error"}])
    );
    assert_eq!(
        b.recv().await,
        json!(["1", "1", "realtime:room1", "phx_close", {}])
    );
}

#[tokio::test]
async fn case34_replay_rules() {
    let server = server_with_policies().await;
    let mut c = connect(&server, &user_token("authenticated")).await;
    let r = c
        .join(
            "room1",
            "1",
            private(json!({"broadcast":{"replay":{"limit":1,"since":"x"}}})),
        )
        .await;
    assert_eq!(
        payload(&r)["response"]["reason"],
        "UnableToReplayMessages: Replay params are not valid"
    );

    // Stored private broadcasts are replayed oldest first after the reply.
    let db = server.db.as_ref().unwrap().connect().await;
    db.batch_execute(
        "insert into realtime.messages (topic, extension, event, payload, private, inserted_at)
         values ('room1','broadcast','e','{\"v\":1}', true, now() - interval '2 seconds'),
                ('room1','broadcast','e','{\"v\":2}', true, now() - interval '1 second');",
    )
    .await
    .unwrap();
    let since = (now() - 60) * 1000;
    c.join_ok(
        "room1",
        "2",
        private(json!({"broadcast":{"replay":{"since":since,"limit":5}}})),
    )
    .await;
    let first = c.recv().await;
    assert_eq!(first[0], "2");
    assert_eq!(first[3], "broadcast");
    assert_eq!(first[4]["payload"], json!({"v":1}));
    assert_eq!(first[4]["meta"]["replayed"], true);
    assert_eq!(c.recv().await[4]["payload"], json!({"v":2}));
    match c.next_within(300).await {
        Seen::Nothing => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn case47_database_broadcasts() {
    let server = server_with_policies().await;
    let mut v2 = connect(&server, &user_token("authenticated")).await;
    v2.join_ok("room1", "1", join_config(json!({}))).await;
    let mut v1 = Client {
        ws: server.socket(&user_token("authenticated"), "1.0.0").await,
        v2: false,
    };
    v1.join_ok("room1", "1", join_config(json!({}))).await;
    let db = server.db.as_ref().unwrap().connect().await;
    // The stream starts after the first join; send until a row arrives.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "database broadcasts never arrived"
        );
        db.execute(
            "select realtime.send('{\"warm\":1}'::jsonb, 'warmup', 'room1', false)",
            &[],
        )
        .await
        .unwrap();
        if let Seen::Binary(_) = v2.next_within(500).await {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    while !matches!(v2.next_within(50).await, Seen::Nothing) {}
    while !matches!(v1.next_within(50).await, Seen::Nothing) {}

    db.execute(
        "select realtime.send('{\"a\":1}'::jsonb, 'ev', 'room1', false)",
        &[],
    )
    .await
    .unwrap();
    let frame = v2.recv_binary().await;
    assert_eq!(frame[0], 4);
    let (topic_len, event_len, meta_len, encoding) = (
        frame[1] as usize,
        frame[2] as usize,
        frame[3] as usize,
        frame[4],
    );
    let mut at = 5;
    assert_eq!(&frame[at..at + topic_len], b"realtime:room1");
    at += topic_len;
    assert_eq!(&frame[at..at + event_len], b"ev");
    at += event_len;
    let meta: serde_json::Value = serde_json::from_slice(&frame[at..at + meta_len]).unwrap();
    at += meta_len;
    assert!(meta["id"].is_string());
    assert_eq!(encoding, 1);
    let body: serde_json::Value = serde_json::from_slice(&frame[at..]).unwrap();
    // realtime.send adds the row id to a payload that has none.
    assert_eq!(body, json!({"a":1,"id":meta["id"]}));
    let j = v1.recv().await;
    assert_eq!(
        j,
        json!({"event":"broadcast","payload":{"event":"ev","meta":{"id":meta["id"]},"payload":{"a":1,"id":meta["id"]},"type":"broadcast"},"ref":null,"topic":"realtime:room1"})
    );
}

#[tokio::test]
async fn rest_broadcasts_to_private_topics_need_write_permission() {
    let server = server_with_policies().await;
    let mut room1 = connect(&server, &user_token("authenticated")).await;
    let mut ro = connect(&server, &user_token("authenticated")).await;
    room1.join_ok("room1", "1", private(json!({}))).await;
    ro.join_ok("ro", "1", private(json!({}))).await;
    let auth = format!("Bearer {}", user_token("authenticated"));
    let headers = [
        ("host", "realtime-dev.supabase-realtime:4000"),
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];

    let res = server
        .request(
            "POST",
            "/api/broadcast/room1/events/ev?private=true",
            &headers,
            Some(br#"{"a":1}"#),
        )
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    assert_eq!(
        room1.recv_binary().await,
        gateway_common::kind4("realtime:room1", "ev", 1, br#"{"a":1}"#)
    );
    let res = server
        .request(
            "POST",
            "/api/broadcast/ro/events/ev?private=true",
            &headers,
            Some(br#"{"a":1}"#),
        )
        .await;
    assert_eq!(res.status, 403);
    assert_eq!(res.json(), json!({"message":"Unauthorized"}));

    let body = json!({"messages":[
        {"topic":"ro","event":"e","payload":{"n":1},"private":true},
        {"topic":"room1","event":"e","payload":{"n":2},"private":true}
    ]});
    let res = server
        .send_json("POST", "/api/broadcast", &headers[..2], &body)
        .await;
    assert_eq!(res.status, 202, "{}", res.text());
    assert_eq!(room1.recv().await[4]["payload"], json!({"n":2}));
    ro.silent(300).await;
}

#[tokio::test]
async fn replication_ready_opt_in_reports_the_connection() {
    let server = server_with_policies().await;
    let mut c = connect(&server, &user_token("authenticated")).await;
    c.join_ok(
        "room1",
        "1",
        join_config(json!({"broadcast":{"replication_ready":true}})),
    )
    .await;
    let f = match c.next_within(REPLICATION_START_WAIT_MS).await {
        Seen::Text(f) => f,
        other => panic!("expected the system message, got {other:?}"),
    };
    assert_eq!(
        f,
        json!(["1",null,"realtime:room1","system",{"channel":"room1","extension":"system","message":"Replication connection established","status":"ok"}])
    );
}

/// A policy that hangs costs its own join, bounded by the statement timeout, and holds one of
/// the tenant's connections: another channel's check goes through meanwhile.
#[tokio::test]
async fn a_slow_policy_does_not_stall_the_tenant() {
    let server = server_with_slow_topic("pg_sleep(30) is null").await;
    let mut slow = connect(&server, &user_token("authenticated")).await;
    let mut fast = connect(&server, &user_token("authenticated")).await;
    let started = Instant::now();
    join_slow(&mut slow).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    fast.join_ok("fast", "1", private(json!({}))).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the fast join waited {:?}",
        started.elapsed()
    );
    let r = match slow.next_within(15_000).await {
        Seen::Text(v) => v,
        other => panic!("expected the slow join's reply, got {other:?}"),
    };
    let reason = payload(&r)["response"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.starts_with("QueryCanceled: "), "{reason}");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
}

/// A join waiting for a slow policy does not hold its socket: the same socket answers a
/// heartbeat and joins another channel meanwhile, and a leave abandons the pending join.
#[tokio::test]
async fn a_socket_stays_responsive_while_its_join_waits_for_the_database() {
    let server = server_with_slow_topic("(select true from pg_sleep(3))").await;
    let mut c = connect(&server, &user_token("authenticated")).await;
    let started = Instant::now();
    join_slow(&mut c).await;
    c.push(None, Some("2"), "phoenix", "heartbeat", json!({}))
        .await;
    let hb = c.recv().await;
    assert_eq!(hb[1], "2", "{hb}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the heartbeat waited {:?}",
        started.elapsed()
    );
    c.join_ok("fast", "3", private(json!({}))).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // The slow join finishes by itself with its own reply.
    let r = match c.next_within(10_000).await {
        Seen::Text(v) => v,
        other => panic!("expected the slow join's reply, got {other:?}"),
    };
    assert_eq!(r[2], "realtime:slow", "{r}");
    assert_eq!(status(&r), "ok", "{r}");

    // Joined again and left before the database answers: no reply for the abandoned join.
    c.push(
        Some("4"),
        Some("4"),
        "realtime:slow",
        "phx_join",
        private(json!({})),
    )
    .await;
    c.push(
        Some("4"),
        Some("5"),
        "realtime:slow",
        "phx_leave",
        json!({}),
    )
    .await;
    loop {
        match c.next_within(6_000).await {
            Seen::Text(v) if v[1] == "5" => continue,
            Seen::Text(v) if v[3] == "phx_close" => continue,
            Seen::Nothing => break,
            other => panic!("unexpected after the leave: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_refused_track_is_checked_again_at_the_next_track() {
    let server = server_with_policies().await;
    let db = server.db.as_ref().unwrap().connect().await;
    db.batch_execute(
        "create table public.presence_ok (topic text primary key);
         grant select on public.presence_ok to authenticated;
         create policy presence_gate on realtime.messages for insert to authenticated
           with check (extension = 'presence'
             and exists (select 1 from public.presence_ok where topic = realtime.topic()));",
    )
    .await
    .unwrap();

    // `a` joins with presence off: presence is first authorised at its first track.
    let mut a = connect(&server, &user_token("authenticated")).await;
    let mut b = connect(&server, &user_token("authenticated")).await;
    a.join_ok("gate", "1", private(json!({}))).await;
    b.join_ok("gate", "1", private(json!({"presence":{"enabled":true}})))
        .await;
    assert_eq!(event(&b.recv().await), "presence_state");
    let track = json!({"type":"presence","event":"track","payload":{"u":"a"}});
    a.push(
        Some("1"),
        Some("2"),
        "realtime:gate",
        "presence",
        track.clone(),
    )
    .await;
    assert_eq!(
        a.recv().await,
        json!(["1","2","realtime:gate","phx_reply",{"status":"error","response":{}}])
    );
    // A meta that is not an object is judged after the authorisation, as upstream does.
    let not_a_map = json!({"type":"presence","event":"track","payload":"nope"});
    a.push(
        Some("1"),
        Some("21"),
        "realtime:gate",
        "presence",
        not_a_map.clone(),
    )
    .await;
    assert_eq!(
        a.recv().await,
        json!(["1","21","realtime:gate","phx_reply",{"status":"error","response":{}}])
    );
    b.silent(200).await;

    // The data the policy reads changes; the next track asks the database again.
    db.execute("insert into public.presence_ok values ('gate')", &[])
        .await
        .unwrap();
    a.push(
        Some("1"),
        Some("22"),
        "realtime:gate",
        "presence",
        not_a_map,
    )
    .await;
    assert_eq!(
        a.recv().await,
        json!(["1","22","realtime:gate","phx_reply",{"status":"error","response":{"reason":"Presence track payload must be a map"}}])
    );
    a.push(Some("1"), Some("3"), "realtime:gate", "presence", track)
        .await;
    assert_eq!(
        a.recv().await,
        json!(["1","3","realtime:gate","phx_reply",{"status":"ok","response":{}}])
    );
    // presence.read was authorised with it: both channels get the join diff.
    for c in [&mut a, &mut b] {
        let diff = c.recv().await;
        assert_eq!(event(&diff), "presence_diff", "{diff}");
        assert_eq!(payload(&diff)["joins"].as_object().unwrap().len(), 1);
    }
}

/// A private channel's first broadcast waits for the write policy off the socket's task: the
/// socket answers a heartbeat meanwhile, and the channel's broadcasts still arrive in order.
#[tokio::test]
async fn a_write_check_does_not_hold_the_socket_and_keeps_order() {
    let server = server_with_policies().await;
    let db = server.db.as_ref().unwrap().connect().await;
    db.batch_execute(
        "create policy write_slow on realtime.messages for insert to authenticated
           with check (realtime.topic() = 'slowwrite' and (select true from pg_sleep(2)));",
    )
    .await
    .unwrap();
    let mut writer = connect(&server, &user_token("authenticated")).await;
    let mut reader = connect(&server, &user_token("authenticated")).await;
    writer.join_ok("slowwrite", "1", private(json!({}))).await;
    reader.join_ok("slowwrite", "1", private(json!({}))).await;
    let started = Instant::now();
    for i in 0..3 {
        writer
            .push(
                Some("1"),
                None,
                "realtime:slowwrite",
                "broadcast",
                json!({"type":"broadcast","event":"e","payload":{"i":i}}),
            )
            .await;
    }
    writer
        .push(None, Some("9"), "phoenix", "heartbeat", json!({}))
        .await;
    let hb = writer.recv().await;
    assert_eq!(hb[1], "9", "{hb}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the heartbeat waited {:?}",
        started.elapsed()
    );
    for i in 0..3 {
        let m = reader.recv().await;
        assert_eq!(m[4]["payload"]["i"], i, "{m}");
    }
    assert!(started.elapsed() >= Duration::from_secs(2));
}

/// A token change on a private channel re-checks the read policy off the socket's task: the
/// socket answers a heartbeat meanwhile, and the channel goes on once the policy allows it.
#[tokio::test]
async fn a_token_refresh_check_does_not_hold_the_socket() {
    let server = server_with_slow_topic("(select true from pg_sleep(2))").await;
    let mut c = connect(&server, &user_token("authenticated")).await;
    join_slow(&mut c).await;
    let r = match c.next_within(10_000).await {
        Seen::Text(v) => v,
        other => panic!("expected the join reply, got {other:?}"),
    };
    assert_eq!(status(&r), "ok", "{r}");
    let other = sign(
        &json!({"role":"authenticated","sub":"someone-else","exp": now() + 3600}),
        JWT_SECRET,
    );
    let started = Instant::now();
    c.push(
        Some("1"),
        Some("2"),
        "realtime:slow",
        "access_token",
        json!({"access_token": other}),
    )
    .await;
    c.push(None, Some("3"), "phoenix", "heartbeat", json!({}))
        .await;
    let hb = c.recv().await;
    assert_eq!(hb[1], "3", "{hb}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the heartbeat waited {:?}",
        started.elapsed()
    );
    // The check allows the new token: the channel stays, nothing else arrives.
    c.silent(3000).await;
    c.push(
        Some("1"),
        Some("4"),
        "realtime:slow",
        "phx_leave",
        json!({}),
    )
    .await;
    assert_eq!(status(&c.recv().await), "ok");
}
