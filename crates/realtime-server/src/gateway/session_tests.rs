//! The session without a WebSocket. The core alone: inputs in, effects asserted, with the reads
//! it needs given as plain values and no gateway. Then the whole session (core and runner) on
//! a gateway, its frames read from the link's queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message as WsMessage;
use jsonwebtoken::{encode, EncodingKey, Header};
use realtime_protocol::{InFrame, Outbound, Vsn};
use serde_json::{json, Map, Value};

use crate::gateway::authorization::{Extension, Policies};
use crate::gateway::control::Control;
use crate::gateway::core::{Core, Cx, Input, Next, Now, Reads, TenantNeed, TenantRead};
use crate::gateway::effect::{Counter, Effect, Fanout, Metric};
use crate::gateway::hub::{encode_ws, TopicKey};
use crate::gateway::session::{ConnectInfo, Session};
use crate::gateway::write_check::WriteVerdict;
use crate::gateway::{Gateway, GatewaySettings, StaticTenants, TenantView};

const TENANT: &str = "realtime-dev";
const SECRET: &str = "session-test-secret-with-32-characters";

fn token_with(claims: Value, header: &Header) -> String {
    encode(
        header,
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn claims(sub: &str, exp_in: i64) -> Value {
    json!({"role":"authenticated","sub":sub,"exp": chrono::Utc::now().timestamp() + exp_in})
}

fn token(exp_in: i64) -> String {
    token_with(claims("u1", exp_in), &Header::default())
}

// ---- The core alone ----

/// What the core reads, as plain values: no limit reached, nothing shutting down.
struct Fixed {
    settings: GatewaySettings,
    ids: AtomicU64,
    presence_rate: f64,
}

impl Fixed {
    fn new() -> Fixed {
        Fixed {
            settings: GatewaySettings::default(),
            ids: AtomicU64::new(100),
            presence_rate: 0.0,
        }
    }
}

impl Reads for Fixed {
    fn settings(&self) -> &GatewaySettings {
        &self.settings
    }
    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }
    fn connected_count(&self, _: &str) -> usize {
        0
    }
    fn is_shutting_down(&self) -> bool {
        false
    }
    fn joins_triggered(&self, _: &str, _: u64) -> bool {
        false
    }
    fn presence_rate(&self, _: &str) -> f64 {
        self.presence_rate
    }
    fn replication_ready(&self, _: &str) -> bool {
        false
    }
}

fn core(token: String) -> Core {
    core_of(TenantView::new(TENANT, SECRET), token)
}

fn core_of(tenant: TenantView, token: String) -> Core {
    Core::new(Arc::new(tenant), Arc::from(token), Map::new(), Vsn::V2)
}

/// One input at `now`, with the tenant read `tenant`; the next step and the effects.
fn step_with(
    c: &mut Core,
    reads: &dyn Reads,
    now: Now,
    tenant: Option<TenantRead>,
    input: Input<'_>,
) -> (Next, Vec<Effect>) {
    let mut fx = Vec::new();
    let next = c.handle(
        input,
        &mut Cx {
            reads,
            now,
            tenant,
            fx: &mut fx,
        },
    );
    (next, fx)
}

fn step(c: &mut Core, reads: &dyn Reads, input: Input<'_>) -> (Next, Vec<Effect>) {
    step_with(c, reads, Now::current(), None, input)
}

/// A text frame in.
fn text(c: &mut Core, reads: &dyn Reads, v: Value) -> (Next, Vec<Effect>) {
    let t = v.to_string();
    step(c, reads, Input::Frame(InFrame::Text(&t)))
}

/// A frame as the client sees it.
fn json_of(msg: &Outbound) -> Value {
    match encode_ws(Vsn::V2, msg) {
        Some(WsMessage::Text(t)) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("not a text frame: {other:?}"),
    }
}

/// The frames the effects send to the socket itself.
fn sent(fx: &[Effect]) -> Vec<Value> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Send(m) => Some(json_of(m)),
            _ => None,
        })
        .collect()
}

fn join_frame(topic: &str, jr: &str, config: Value) -> Value {
    json!([jr, jr, topic, "phx_join", {"config": config}])
}

fn public_config() -> Value {
    json!({"broadcast": {"self": false, "ack": true}, "presence": {"enabled": false}, "private": false})
}

/// Joins `topic` with `config`; the channel's id.
fn joined(c: &mut Core, reads: &dyn Reads, topic: &str, config: Value) -> u64 {
    let (_, fx) = text(c, reads, join_frame(topic, "1", config));
    assert_eq!(sent(&fx)[0][4]["status"], "ok", "{fx:?}");
    c.channels[topic].id
}

fn room_key() -> TopicKey {
    TopicKey {
        tenant: Arc::from(TENANT),
        private: false,
        sub: Arc::from("room"),
    }
}

#[test]
fn heartbeat_is_answered_with_one_frame() {
    let reads = Fixed::new();
    let mut c = core(token(3600));
    let frame = json!([null, "1", "phoenix", "heartbeat", {}]);
    let len = frame.to_string().len();
    let (next, fx) = text(&mut c, &reads, frame);
    assert_eq!(next, Next::Continue);
    assert!(matches!(fx[0], Effect::Metric(Metric::InputBytes(n)) if n == len));
    assert_eq!(
        sent(&fx),
        vec![json!([null, "1", "phoenix", "phx_reply", {"status": "ok", "response": {}}])]
    );
    assert_eq!(fx.len(), 2, "{fx:?}");
}

#[test]
fn malformed_frames_are_dropped_and_unknown_topics_answered() {
    let reads = Fixed::new();
    let mut c = core(token(3600));
    for bad in ["not json", "[1,2]", "{}", "[null, null, 5, \"x\", {}]"] {
        let (next, fx) = step(&mut c, &reads, Input::Frame(InFrame::Text(bad)));
        assert_eq!(next, Next::Continue);
        assert!(
            matches!(fx.as_slice(), [Effect::Metric(Metric::InputBytes(_))]),
            "{bad}: {fx:?}"
        );
    }
    let (_, fx) = text(
        &mut c,
        &reads,
        json!(["9", "2", "realtime:nowhere", "broadcast", {}]),
    );
    let got = sent(&fx);
    assert_eq!(got[0][4]["status"], "error", "{got:?}");
    assert_eq!(got[0][4]["response"]["reason"], "unmatched topic");
}

#[test]
fn a_public_join_subscribes_replies_and_counts() {
    let reads = Fixed::new();
    let mut c = core(token(3600));
    let frame = join_frame("realtime:room", "1", public_config());
    let input = Input::Inbound(
        realtime_protocol::decode(Vsn::V2, InFrame::Text(&frame.to_string())).unwrap(),
    );
    assert_eq!(c.tenant_need(&input, Now::current()), TenantNeed::Fresh);
    let (next, fx) = step(&mut c, &reads, input);
    assert_eq!(next, Next::Continue);
    let id = c.channels["realtime:room"].id;
    assert!(matches!(fx[0], Effect::Count(Counter::Joins, 1)), "{fx:?}");
    assert!(
        matches!(&fx[1], Effect::Subscribe { key, channel_id, .. } if *key == room_key() && *channel_id == id),
        "{fx:?}"
    );
    assert_eq!(
        sent(&fx),
        vec![
            json!(["1", "1", "realtime:room", "phx_reply", {"status": "ok", "response": {"postgres_changes": []}}])
        ]
    );
    assert!(fx.iter().any(|e| matches!(e, Effect::CountUser)));
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Metric(Metric::Joined))));
    assert!(fx.iter().any(|e| matches!(e, Effect::EnsureDbBroadcasts)));
    assert!(!fx.iter().any(|e| matches!(
        e,
        Effect::PresenceState { .. } | Effect::SubscribeChanges(_) | Effect::CheckJoin { .. }
    )));
    assert!(c.next_token_check().is_some(), "the token check is armed");
    // Counted once: a second join does not count the user again.
    let (_, fx) = text(
        &mut c,
        &reads,
        join_frame("realtime:other", "2", public_config()),
    );
    assert!(!fx.iter().any(|e| matches!(e, Effect::CountUser)));
}

#[test]
fn a_join_of_a_tenant_gone_is_refused_and_closes() {
    let reads = Fixed::new();
    let mut c = core(token(3600));
    let t = join_frame("realtime:room", "1", public_config()).to_string();
    let (_, fx) = step_with(
        &mut c,
        &reads,
        Now::current(),
        Some(TenantRead::Missing),
        Input::Frame(InFrame::Text(&t)),
    );
    let refusal = fx.iter().find_map(|e| match e {
        Effect::RefuseJoin { reply, close, .. } => Some((json_of(reply), *close)),
        _ => None,
    });
    let (reply, close) = refusal.expect("a refusal");
    assert!(close);
    assert_eq!(reply[4]["status"], "error");
    assert!(c.channels.is_empty());
}

#[test]
fn a_join_with_presence_pushes_the_state_after_the_reply() {
    let reads = Fixed::new();
    let mut c = core(token(3600));
    let (_, fx) = text(
        &mut c,
        &reads,
        join_frame(
            "realtime:room",
            "1",
            json!({"presence": {"enabled": true, "key": "k1"}}),
        ),
    );
    let reply = fx
        .iter()
        .position(|e| matches!(e, Effect::Send(_)))
        .unwrap();
    let state = fx
        .iter()
        .position(|e| matches!(e, Effect::PresenceState { key, topic, push_ref } if *key == room_key() && topic == "realtime:room" && push_ref.as_deref() == Some("1")))
        .expect("presence_state asked for");
    assert!(reply < state, "{fx:?}");
    assert_eq!(c.channels["realtime:room"].presence_key, "k1");
}

#[test]
fn a_join_with_postgres_changes_asks_for_a_subscription() {
    let reads = Fixed::new();
    let mut c = core(token(3600));
    let binding = json!({"event": "*", "schema": "public", "table": "todos"});
    let (_, fx) = text(
        &mut c,
        &reads,
        join_frame("realtime:db", "1", json!({"postgres_changes": [binding]})),
    );
    let echoed = &sent(&fx)[0][4]["response"]["postgres_changes"][0];
    let id = echoed["id"].as_u64().expect("the binding's id is echoed");
    let req = fx
        .iter()
        .find_map(|e| match e {
            Effect::SubscribeChanges(r) => Some(r),
            _ => None,
        })
        .expect("a subscription is asked for");
    assert_eq!(req.channel_id, c.channels["realtime:db"].id);
    assert_eq!(req.generation, 1);
    assert_eq!(req.topic, "realtime:db");
    assert_eq!(req.bindings, vec![(id as u32, binding)]);
    assert_eq!(req.claims["sub"], "u1");
    // A failed attempt is reported on the channel and retried later.
    let (_, fx) = step(
        &mut c,
        &reads,
        Input::Control(Control::CdcResult {
            channel_id: req.channel_id,
            generation: 1,
            result: Box::new(Err(realtime_cdc::SubscribeError::Unavailable(
                "down".into(),
            ))),
        }),
    );
    assert_eq!(sent(&fx)[0][3], "system", "{fx:?}");
    assert!(fx.iter().any(|e| matches!(e, Effect::After(d, Control::CdcRetry { generation: 1, .. }) if *d >= Duration::from_secs(5))));
}

#[test]
fn broadcasts_fan_out_with_ack_and_self() {
    let reads = Fixed::new();
    let mut c = core(token(3600));
    let id = joined(&mut c, &reads, "realtime:room", public_config());
    let (_, fx) = text(
        &mut c,
        &reads,
        json!(["1", "2", "realtime:room", "broadcast", {"type": "broadcast", "event": "e", "payload": {"n": 1}}]),
    );
    assert!(matches!(fx[1], Effect::Count(Counter::Events, 1)), "{fx:?}");
    assert!(matches!(fx[2], Effect::Metric(Metric::BroadcastPayload(_))));
    let Effect::Broadcast(fanout) = &fx[3] else {
        panic!("{fx:?}")
    };
    let Fanout {
        key,
        msg,
        exclude,
        ack,
        max_events_per_second,
    } = &**fanout;
    assert_eq!(*key, room_key());
    assert_eq!(*exclude, Some(id), "self is off: the sender is left out");
    assert_eq!(*max_events_per_second, 100);
    assert_eq!(json_of(msg)[4]["payload"], json!({"n": 1}));
    assert_eq!(
        json_of(ack.as_ref().expect("ack is on")),
        json!(["1", "2", "realtime:room", "phx_reply", {"status": "ok", "response": {}}])
    );
    assert!(sent(&fx).is_empty(), "the ack goes out with the fan-out");

    let config = json!({"broadcast": {"self": true}});
    joined(&mut c, &reads, "realtime:self", config);
    let (_, fx) = text(
        &mut c,
        &reads,
        json!(["1", "3", "realtime:self", "broadcast", {"type": "broadcast", "event": "e", "payload": {}}]),
    );
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Broadcast(f) if f.exclude.is_none() && f.ack.is_none())),
        "{fx:?}"
    );
}

#[test]
fn an_oversized_broadcast_is_refused_to_an_acking_sender() {
    let reads = Fixed::new();
    let mut tenant = TenantView::new(TENANT, SECRET);
    tenant.limits.max_payload_size_in_kb = 0;
    let mut c = core_of(tenant, token(3600));
    joined(&mut c, &reads, "realtime:room", public_config());
    let big = "x".repeat(600);
    let (_, fx) = text(
        &mut c,
        &reads,
        json!(["1", "2", "realtime:room", "broadcast", {"type": "broadcast", "event": "e", "payload": {"big": big}}]),
    );
    assert!(!fx.iter().any(|e| matches!(e, Effect::Broadcast(_))));
    assert!(matches!(fx[1], Effect::Count(Counter::Events, 1)));
    assert_eq!(sent(&fx)[0][4]["status"], "error", "{fx:?}");
}

#[test]
fn leave_replies_closes_and_unsubscribes() {
    let reads = Fixed::new();
    let mut c = core(token(3600));
    let id = joined(
        &mut c,
        &reads,
        "realtime:room",
        json!({"presence": {"enabled": true}}),
    );
    text(
        &mut c,
        &reads,
        json!(["1", "2", "realtime:room", "presence", {"type": "presence", "event": "track", "payload": {"a": 1}}]),
    );
    let (_, fx) = text(
        &mut c,
        &reads,
        json!(["1", "3", "realtime:room", "phx_leave", {}]),
    );
    let got = sent(&fx);
    assert_eq!(got[0][4]["status"], "ok");
    assert_eq!(got[1][3], "phx_close");
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Unsubscribe { channel_id, .. } if *channel_id == id)));
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Untrack { channel_id, .. } if *channel_id == id)),
        "a tracked presence leaves with the channel: {fx:?}"
    );
    assert!(c.channels.is_empty());
    // A topic not joined (any more) is answered ok, and nothing else happens.
    let (_, fx) = text(
        &mut c,
        &reads,
        json!(["1", "4", "realtime:room", "phx_leave", {}]),
    );
    assert_eq!(sent(&fx).len(), 1);
    assert_eq!(fx.len(), 2, "{fx:?}");
}

#[test]
fn presence_track_and_untrack() {
    let reads = Fixed::new();
    let mut c = core(token(3600));
    let id = joined(
        &mut c,
        &reads,
        "realtime:room",
        json!({"presence": {"key": "k"}}),
    );
    let track = json!(["1", "2", "realtime:room", "presence", {"type": "presence", "event": "track", "payload": {"a": 1}}]);
    let (_, fx) = text(&mut c, &reads, track.clone());
    assert!(
        matches!(fx[1], Effect::Count(Counter::Presence, 1)),
        "{fx:?}"
    );
    assert!(matches!(fx[2], Effect::Metric(Metric::PresencePayload(_))));
    assert!(
        matches!(&fx[3], Effect::Track { key, pkey, channel_id, meta } if *key == room_key() && pkey == "k" && *channel_id == id && meta["a"] == 1),
        "{fx:?}"
    );
    assert_eq!(sent(&fx)[0][4]["status"], "ok");
    // The same meta again: answered, not tracked again.
    let (_, fx) = text(&mut c, &reads, track);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Track { .. })));
    assert_eq!(sent(&fx)[0][4]["status"], "ok");
    // A meta that is not a map is refused.
    let (_, fx) = text(
        &mut c,
        &reads,
        json!(["1", "3", "realtime:room", "presence", {"type": "presence", "event": "track", "payload": 5}]),
    );
    assert_eq!(sent(&fx)[0][4]["status"], "error");
    let (_, fx) = text(
        &mut c,
        &reads,
        json!(["1", "4", "realtime:room", "presence", {"type": "presence", "event": "untrack"}]),
    );
    assert!(matches!(&fx[1], Effect::Untrack { channel_id, .. } if *channel_id == id));
    assert_eq!(sent(&fx)[0][4]["status"], "ok");
    assert!(c.channels["realtime:room"].tracked.is_none());
}

#[test]
fn a_track_over_the_presence_rate_stops_the_channel() {
    let reads = Fixed {
        presence_rate: 5000.0,
        ..Fixed::new()
    };
    let mut c = core(token(3600));
    joined(&mut c, &reads, "realtime:room", json!({}));
    let (_, fx) = text(
        &mut c,
        &reads,
        json!(["1", "2", "realtime:room", "presence", {"type": "presence", "event": "track", "payload": {}}]),
    );
    let got = sent(&fx);
    assert_eq!(got[0][3], "system", "{got:?}");
    assert_eq!(got[1][3], "phx_close");
    assert!(!fx
        .iter()
        .any(|e| matches!(e, Effect::Track { .. } | Effect::Count(..))));
}

fn refresh(topic: &str, token: &str) -> Value {
    json!(["1", "9", topic, "access_token", {"access_token": token}])
}

#[test]
fn access_token_refresh_valid_expired_and_another_subject() {
    let reads = Fixed::new();
    let first = claims("u1", 3600);
    let mut c = core(token_with(first.clone(), &Header::default()));
    joined(&mut c, &reads, "realtime:room", public_config());
    let armed = c.next_token_check();

    // The same claims under another header: a valid token, nothing to check again.
    let same = token_with(
        first,
        &Header {
            typ: None,
            ..Header::default()
        },
    );
    let (_, fx) = text(&mut c, &reads, refresh("realtime:room", &same));
    assert!(fx.iter().all(|e| matches!(e, Effect::Metric(_))), "{fx:?}");
    assert_eq!(&*c.channels["realtime:room"].token, same.as_str());
    assert!(c.next_token_check() >= armed);

    // Another subject, same role, on a public channel without bindings: kept.
    let other = token_with(claims("u2", 7200), &Header::default());
    let (_, fx) = text(&mut c, &reads, refresh("realtime:room", &other));
    assert!(fx.iter().all(|e| matches!(e, Effect::Metric(_))), "{fx:?}");
    assert_eq!(c.channels["realtime:room"].claims()["sub"], "u2");

    // An expired token stops the channel.
    let expired = token_with(claims("u2", -10), &Header::default());
    let (_, fx) = text(&mut c, &reads, refresh("realtime:room", &expired));
    let got = sent(&fx);
    assert_eq!(got[0][3], "system", "{got:?}");
    assert_eq!(got[0][4]["status"], "error");
    assert_eq!(got[1][3], "phx_close");
    assert!(fx.iter().any(|e| matches!(e, Effect::Unsubscribe { .. })));
    assert!(c.channels.is_empty());
}

#[test]
fn another_subject_on_a_private_channel_is_checked_off_the_socket() {
    let reads = Fixed::new();
    let mut c = core(token(3600));
    let (_, fx) = text(
        &mut c,
        &reads,
        join_frame("realtime:secret", "1", json!({"private": true})),
    );
    let join = fx
        .into_iter()
        .find_map(|e| match e {
            Effect::CheckJoin { join, .. } => Some(join),
            _ => None,
        })
        .expect("the join waits for the database");
    assert!(c.channels.is_empty());
    let allowed = Policies {
        broadcast_read: Some(true),
        presence_read: Some(false),
        ..Policies::default()
    };
    let (_, fx) = step(
        &mut c,
        &reads,
        Input::Control(Control::JoinChecked {
            join,
            verdict: Box::new(Ok((allowed, Vec::new()))),
        }),
    );
    assert_eq!(sent(&fx)[0][4]["status"], "ok", "{fx:?}");
    let id = c.channels["realtime:secret"].id;

    let other = token_with(claims("u2", 3600), &Header::default());
    let (_, fx) = text(&mut c, &reads, refresh("realtime:secret", &other));
    assert!(
        fx.iter().any(|e| matches!(e, Effect::CheckRefresh { channel_id, role_changed: false, ctx, .. } if *channel_id == id && ctx.claims["sub"] == "u2")),
        "{fx:?}"
    );
    // Meanwhile the channel's frames wait; a heartbeat does not.
    let (_, fx) = text(
        &mut c,
        &reads,
        json!(["1", "10", "realtime:secret", "broadcast", {"type": "broadcast", "event": "e", "payload": {}}]),
    );
    assert!(fx.iter().all(|e| matches!(e, Effect::Metric(_))), "{fx:?}");
    let (_, fx) = text(
        &mut c,
        &reads,
        json!([null, "11", "phoenix", "heartbeat", {}]),
    );
    assert_eq!(sent(&fx).len(), 1);
}

#[test]
fn a_private_broadcast_waits_for_its_write_check_then_goes_out_in_order() {
    let reads = Fixed::new();
    let mut c = core(token(3600));
    let (_, fx) = text(
        &mut c,
        &reads,
        join_frame("realtime:secret", "1", json!({"private": true})),
    );
    let join = fx
        .into_iter()
        .find_map(|e| match e {
            Effect::CheckJoin { join, .. } => Some(join),
            _ => None,
        })
        .expect("the join waits for the database");
    let read_only = Policies {
        broadcast_read: Some(true),
        ..Policies::default()
    };
    step(
        &mut c,
        &reads,
        Input::Control(Control::JoinChecked {
            join,
            verdict: Box::new(Ok((read_only, Vec::new()))),
        }),
    );
    let id = c.channels["realtime:secret"].id;
    let bc = |n: i64| json!(["1", n.to_string(), "realtime:secret", "broadcast", {"type": "broadcast", "event": "e", "payload": {"n": n}}]);
    let (_, fx) = text(&mut c, &reads, bc(1));
    assert!(
        fx.iter().any(|e| matches!(e, Effect::CheckWrite { channel_id, ext: Extension::Broadcast, .. } if *channel_id == id)),
        "{fx:?}"
    );
    assert!(!fx.iter().any(|e| matches!(e, Effect::Broadcast(_))));
    let (_, fx) = text(&mut c, &reads, bc(2));
    assert!(
        fx.iter().all(|e| matches!(e, Effect::Metric(_))),
        "waits: {fx:?}"
    );

    let verdict = |c: &Core| {
        Input::Control(Control::WriteChecked(Box::new(WriteVerdict {
            topic: "realtime:secret".into(),
            channel_id: c.channels["realtime:secret"].id,
            ext: Extension::Broadcast,
            result: Ok(Policies {
                broadcast_write: Some(true),
                ..read_only
            }),
        })))
    };
    assert_eq!(
        c.tenant_need(&verdict(&c), Now::current()),
        TenantNeed::None
    );
    let v = verdict(&c);
    let (_, fx) = step(&mut c, &reads, v);
    assert!(
        matches!(&fx[0], Effect::SetPerms { policies, .. } if policies.broadcast_write == Some(true)),
        "{fx:?}"
    );
    let sent_n: Vec<Value> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Broadcast(f) => Some(json_of(&f.msg)[4]["payload"]["n"].clone()),
            _ => None,
        })
        .collect();
    assert_eq!(sent_n, vec![json!(1), json!(2)], "in arrival order");
    // The answer is kept: the next broadcast goes out at once.
    let (_, fx) = text(&mut c, &reads, bc(3));
    assert!(
        fx.iter().any(|e| matches!(e, Effect::Broadcast(_))),
        "{fx:?}"
    );
    // A join of the topic waiting behind a check needs a fresh tenant read when it is handled.
    text(
        &mut c,
        &reads,
        json!(["1", "4", "realtime:secret", "presence", {"type": "presence", "event": "track", "payload": {}}]),
    );
    text(
        &mut c,
        &reads,
        join_frame("realtime:secret", "5", json!({"private": true})),
    );
    assert_eq!(
        c.tenant_need(&verdict(&c), Now::current()),
        TenantNeed::Fresh
    );
}

#[test]
fn an_expired_token_stops_its_channel_when_the_check_is_due() {
    let reads = Fixed::new();
    let mut c = core(token(1));
    let id = joined(&mut c, &reads, "realtime:room", public_config());
    let due = c.next_token_check().expect("a check is scheduled");
    // Before it is due, nothing happens.
    let (_, fx) = step(&mut c, &reads, Input::TokensDue);
    assert!(fx.is_empty(), "{fx:?}");
    // At the due time (the clock is an input: no sleeping).
    let now = Now::current();
    let later = Now {
        at: due,
        unix_ms: now.unix_ms + (due - now.at).as_millis() as i64,
    };
    assert_eq!(c.tenant_need(&Input::TokensDue, later), TenantNeed::None);
    let (_, fx) = step_with(&mut c, &reads, later, None, Input::TokensDue);
    let got = sent(&fx);
    assert_eq!(got[0][3], "system", "{got:?}");
    assert_eq!(got[0][4]["status"], "error");
    assert_eq!(got[1][3], "phx_close");
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Unsubscribe { channel_id, .. } if *channel_id == id)));
    assert!(c.next_token_check().is_none());
}

#[test]
fn idle_closes_and_the_sweep_drops_a_socket_without_channels() {
    let reads = Fixed::new();
    let mut c = core(token(3600));
    // Never joined: the sweep leaves it alone.
    let (next, fx) = step(&mut c, &reads, Input::Sweep);
    assert_eq!(next, Next::Continue);
    assert!(fx.is_empty());
    joined(&mut c, &reads, "realtime:room", public_config());
    assert_eq!(step(&mut c, &reads, Input::Sweep).0, Next::Continue);
    text(
        &mut c,
        &reads,
        json!(["1", "3", "realtime:room", "phx_leave", {}]),
    );
    let (next, fx) = step(&mut c, &reads, Input::Sweep);
    assert_eq!(next, Next::Drop);
    assert!(matches!(fx.as_slice(), [Effect::Drop]), "{fx:?}");

    let mut c = core(token(3600));
    let (next, fx) = step(&mut c, &reads, Input::Idle);
    assert_eq!(next, Next::Close);
    assert!(matches!(fx.as_slice(), [Effect::Close(1000)]), "{fx:?}");
}

#[test]
fn a_server_disconnect_tells_every_channel_then_closes() {
    let reads = Fixed::new();
    let mut c = core(token(3600));
    joined(&mut c, &reads, "realtime:a", public_config());
    joined(&mut c, &reads, "realtime:b", public_config());
    let (next, fx) = step(&mut c, &reads, Input::Control(Control::ServerDisconnect));
    assert_eq!(next, Next::Close);
    assert!(matches!(fx[0], Effect::Count(Counter::Events, 2)));
    assert_eq!(sent(&fx).len(), 2);
    assert!(matches!(fx.last(), Some(Effect::Close(1012))));
}

#[tokio::test]
async fn the_core_leaves_the_gateway_alone() {
    // The gateway as the core's reads: the hub, the presence store and the counters only
    // change when the runner applies the effects.
    let gw = gateway();
    let mut c = core(token(3600));
    let (_, fx) = text(
        &mut c,
        &*gw,
        join_frame("realtime:room", "1", json!({"presence": {"enabled": true}})),
    );
    assert!(fx.iter().any(|e| matches!(e, Effect::Subscribe { .. })));
    text(
        &mut c,
        &*gw,
        json!(["1", "2", "realtime:room", "presence", {"type": "presence", "event": "track", "payload": {"a": 1}}]),
    );
    assert_eq!(gw.hub.subscriber_count(&room_key()), 0);
    assert_eq!(gw.presence.state(&room_key()), json!({}));
    assert_eq!(gw.connected_count(TENANT), 0);
}

// ---- The session: core and runner ----

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
fn queued(s: &Session) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(m) = s.link().out.try_recv() {
        if let WsMessage::Text(t) = m {
            out.push(serde_json::from_str(t.as_str()).unwrap());
        }
    }
    out
}

fn join(topic: &str, jr: &str) -> Value {
    join_frame(topic, jr, public_config())
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
        queued(&s),
        vec![json!([null, "1", "phoenix", "phx_reply", {"status": "ok", "response": {}}])]
    );
    frame(
        &mut s,
        json!(["9", "2", "realtime:nowhere", "broadcast", {}]),
    )
    .await;
    let reply = &queued(&s)[0];
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
        let reply = &queued(s)[0];
        assert_eq!(reply[3], "phx_reply");
        assert_eq!(reply[4]["status"], "ok", "{reply}");
    }
    assert_eq!(gw.hub.subscriber_count(&room_key()), 2);
    assert_eq!(gw.connected_count(TENANT), 2);
    frame(
        &mut a,
        json!(["1", "2", "realtime:room", "broadcast", {"type": "broadcast", "event": "e", "payload": {"n": 1}}]),
    )
    .await;
    // The ack to the sender, the message to the other session only (self is off).
    assert_eq!(
        queued(&a),
        vec![json!(["1", "2", "realtime:room", "phx_reply", {"status": "ok", "response": {}}])]
    );
    let got = queued(&b);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0][3], "broadcast");
    assert_eq!(got[0][4]["payload"], json!({"n": 1}));

    frame(&mut b, json!(["1", "3", "realtime:room", "phx_leave", {}])).await;
    let got = queued(&b);
    assert_eq!(got[0][4]["status"], "ok");
    assert_eq!(got[1][3], "phx_close");
    frame(
        &mut a,
        json!(["1", "4", "realtime:room", "broadcast", {"type": "broadcast", "event": "e", "payload": {}}]),
    )
    .await;
    assert!(queued(&b).is_empty());
    // A socket that joined and lost every channel is dropped by the sweep.
    assert_eq!(b.handle(Input::Sweep).await, Next::Drop);
    assert!(b.link().kill.is_cancelled());
    assert_eq!(a.handle(Input::Sweep).await, Next::Continue);
    a.finish();
    b.finish();
    assert_eq!(gw.session_count(), 0);
    assert_eq!(gw.hub.subscriber_count(&room_key()), 0);
    assert_eq!(gw.connected_count(TENANT), 0);
}

#[tokio::test]
async fn a_refused_join_is_answered_after_the_backoff() {
    let gw = gateway();
    let mut s = open(&gw, token(3600));
    frame(&mut s, json!(["1", "1", "realtime:", "phx_join", {}])).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let got = queued(&s);
    assert_eq!(got[0][4]["status"], "error", "{got:?}");
}

#[tokio::test]
async fn an_idle_session_closes() {
    let gw = gateway();
    let mut s = open(&gw, token(3600));
    assert_eq!(s.handle(Input::Idle).await, Next::Close);
    assert!(matches!(s.link().out.try_recv(), Some(WsMessage::Close(Some(f))) if f.code == 1000));
}
