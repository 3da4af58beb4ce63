//! `phx_join`: the checks of PROTOCOL.md §5.3 in upstream's order, the delayed error reply, the
//! success reply echoing postgres_changes bindings with ids, and what follows it (§5.6).

use std::sync::Arc;

use realtime_cdc::db_broadcast::{DbBroadcast, DbBroadcastError};
use realtime_protocol::reply;
use realtime_protocol::wording::join;
use realtime_protocol::{events, Message, Outbound};
use serde_json::{json, Map, Value};

use crate::gateway::authorization::{self, Policies, PolicyContext};
use crate::gateway::channel::{flex_bool, Channel};
use crate::gateway::control::Control;
use crate::gateway::core::{Core, Cx, TenantRead};
use crate::gateway::effect::{Counter, Effect, Metric};
use crate::gateway::hub::{ChannelPerms, TopicKey};
use crate::gateway::jwt::{self, JwtError};
use crate::gateway::postgres_changes::binding_id;
use crate::gateway::replay::ReplayParams;
use crate::gateway::Gateway;

/// A refused join: the reply's `reason`, and whether the socket closes (1001) after it.
#[derive(Debug)]
pub struct Refusal {
    reason: String,
    close: bool,
}

impl Refusal {
    fn new(reason: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.into(),
            close: false,
        }
    }

    fn closing(reason: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.into(),
            close: true,
        }
    }
}

/// The join settings read from the payload (lenient: a wrong type falls back to the default).
#[derive(Debug)]
pub struct JoinConfig {
    legacy: bool,
    private: bool,
    ack: bool,
    self_broadcast: bool,
    replay: Option<Value>,
    replication_ready: bool,
    presence_enabled: bool,
    presence_key: Option<String>,
    bindings: Vec<Value>,
}

fn read_config(sub: &str, payload: &Map<String, Value>) -> JoinConfig {
    let legacy = !payload.contains_key("config");
    let cfg = payload.get("config").and_then(Value::as_object);
    let get = |k: &str| cfg.and_then(|c| c.get(k));
    let broadcast = get("broadcast").and_then(Value::as_object);
    let presence = get("presence").and_then(Value::as_object);
    let presence_key = match presence.and_then(|p| p.get("key")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let bindings = if legacy {
        legacy_binding(sub).into_iter().collect()
    } else {
        match get("postgres_changes") {
            Some(Value::Array(a)) => a.iter().filter(|v| v.is_object()).cloned().collect(),
            _ => Vec::new(),
        }
    };
    JoinConfig {
        legacy,
        private: flex_bool(get("private")).unwrap_or(false),
        ack: flex_bool(broadcast.and_then(|b| b.get("ack"))).unwrap_or(false),
        self_broadcast: flex_bool(broadcast.and_then(|b| b.get("self"))).unwrap_or(false),
        replay: broadcast
            .and_then(|b| b.get("replay"))
            .filter(|r| !r.is_null())
            .cloned(),
        presence_enabled: flex_bool(presence.and_then(|p| p.get("enabled"))).unwrap_or(false),
        // Any value but `false` and `null` opts in (even the string "false").
        replication_ready: !matches!(
            broadcast.and_then(|b| b.get("replication_ready")),
            None | Some(Value::Null) | Some(Value::Bool(false))
        ),
        presence_key,
        bindings,
    }
}

/// The single binding a config-less join derives from its topic: `schema[:table[:filter]]`.
fn legacy_binding(sub: &str) -> Option<Value> {
    let mut parts = sub.splitn(3, ':');
    let mut obj = Map::new();
    for name in ["schema", "table", "filter"] {
        if let Some(p) = parts.next() {
            obj.insert(name.to_string(), Value::String(p.to_string()));
        }
    }
    Some(Value::Object(obj))
}

/// Picks the join token (PROTOCOL.md §5.1 "Join token selection").
///
/// The connect token is shared, not copied, when the join names the same one (realtime-js
/// sends it again as `access_token`): every channel keeps its token for its whole life.
fn join_token(payload: &Map<String, Value>, connect_token: &Arc<str>) -> Arc<str> {
    let access = payload.get("access_token");
    let user = payload.get("user_token");
    let candidate = access.or(user).and_then(Value::as_str);
    if candidate.map(|c| c.starts_with("sb_")).unwrap_or(false) {
        return connect_token.clone();
    }
    let chosen = match (user, access) {
        (Some(Value::String(u)), _) => u,
        (_, Some(Value::String(a))) => a,
        _ => return connect_token.clone(),
    };
    if chosen.as_str() == &**connect_token {
        connect_token.clone()
    } else {
        Arc::from(chosen.as_str())
    }
}

/// A join that passed every check but the tenant database's.
#[derive(Debug)]
pub struct PendingJoin {
    m: Message,
    sub: String,
    cfg: JoinConfig,
    tenant_id: String,
    token: Arc<str>,
    claims: jwt::Claims,
    presence_on: bool,
    /// Tells this attempt from a later join of the same topic.
    attempt: u64,
}

/// What the tenant database said about a pending join: the channel's read permissions and the
/// replayed messages, or the refusal.
pub type DbVerdict = Result<(Policies, Vec<DbBroadcast>), Refusal>;

/// The tenant-database part of a join (private channels' read policies, then replay).
pub(crate) async fn database_checks(
    gw: &Gateway,
    join: &PendingJoin,
    headers: Map<String, Value>,
) -> DbVerdict {
    let PendingJoin {
        m,
        sub,
        cfg,
        tenant_id,
        claims,
        presence_on,
        ..
    } = join;
    let mut policies = Policies::default();
    if cfg.private {
        let unauthorized = join::unauthorized(sub);
        let ctx = PolicyContext {
            topic: sub.clone(),
            claims: claims.clone(),
            headers,
        };
        policies = match gw
            .read_policies(tenant_id, &ctx, *presence_on, Policies::default())
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(tenant = %tenant_id, topic = %m.topic, error = %e, "read policy check failed");
                return Err(Refusal::new(
                    authorization::join_reason(&e).unwrap_or(unauthorized),
                ));
            }
        };
        if policies.broadcast_read != Some(true) && policies.presence_read != Some(true) {
            return Err(Refusal::new(unauthorized));
        }
        if cfg.replay.is_some() && policies.broadcast_read != Some(true) {
            return Err(Refusal::new(unauthorized));
        }
    }
    let mut replayed = Vec::new();
    if let Some(replay) = &cfg.replay {
        let params =
            ReplayParams::parse(replay).ok_or_else(|| Refusal::new(join::REPLAY_PARAMS_INVALID))?;
        replayed = gw.replay(tenant_id, sub, params).await.map_err(|e| {
            tracing::error!(tenant = %tenant_id, topic = %m.topic, error = %e, "replay failed");
            Refusal::new(match e {
                DbBroadcastError::ReplayParams => e.to_string(),
                _ => join::REPLAY_FAILED.to_string(),
            })
        })?;
    }
    Ok((policies, replayed))
}

/// Longest topic a channel may join. Upstream sets none; topics are held per channel, keyed in
/// the hub and written to logs, so a client must not choose their size.
pub const MAX_TOPIC_BYTES: usize = 1024;

impl Core {
    pub(crate) fn on_join(&mut self, m: Message, cx: &mut Cx<'_>) {
        self.attempted_join = true;
        match self.try_join(&m, cx) {
            Err(refusal) => self.refuse_join(m, refusal, cx),
            Ok(join) if !join.cfg.private && join.cfg.replay.is_none() => {
                self.finish_join(join, Policies::default(), Vec::new(), cx)
            }
            Ok(join) => self.check_join_in_database(join, cx),
        }
    }

    /// Asks for a refused join's reply, which waits out upstream's backoff.
    fn refuse_join(&mut self, m: Message, refusal: Refusal, cx: &mut Cx<'_>) {
        crate::gateway::socket_log::join_refused(&self.tenant_id, &m.topic, &refusal.reason);
        cx.push(Effect::RefuseJoin {
            reply: Outbound::Message(reply::error_reason(
                m.join_ref,
                m.msg_ref,
                &m.topic,
                &refusal.reason,
            )),
            reason: refusal.reason,
            close: refusal.close,
        });
    }

    /// Asks for a join's tenant-database checks (private channels' policies, replay), which run
    /// off the socket's task: meanwhile the socket answers heartbeats, serves its other
    /// channels and can be closed. The join finishes in [`Core::on_join_checked`].
    fn check_join_in_database(&mut self, mut join: PendingJoin, cx: &mut Cx<'_>) {
        join.attempt = cx.reads.next_id();
        self.pending_joins
            .insert(join.m.topic.clone(), join.attempt);
        cx.push(Effect::CheckJoin {
            join: Box::new(join),
            headers: self.headers.clone(),
        });
    }

    /// The tenant database answered for a pending join; a join left or joined again since
    /// is forgotten.
    pub(crate) fn on_join_checked(
        &mut self,
        join: PendingJoin,
        verdict: DbVerdict,
        cx: &mut Cx<'_>,
    ) {
        if self.pending_joins.get(&join.m.topic) != Some(&join.attempt) {
            return;
        }
        self.pending_joins.remove(&join.m.topic);
        match verdict {
            Ok((policies, replayed)) => self.finish_join(join, policies, replayed, cx),
            Err(refusal) => self.refuse_join(join.m, refusal, cx),
        }
    }

    /// Every check that needs no tenant database, in upstream's order.
    fn try_join(&mut self, m: &Message, cx: &mut Cx<'_>) -> Result<PendingJoin, Refusal> {
        let sub = events::sub_topic(&m.topic).unwrap_or_default();
        if m.topic.len() > MAX_TOPIC_BYTES {
            return Err(Refusal::new(join::TOPIC_NAME_TOO_LONG));
        }
        if sub.is_empty() {
            return Err(Refusal::new(join::TOPIC_NAME_REQUIRED));
        }
        let Value::Object(payload) = &m.payload else {
            return Err(Refusal::new(join::PAYLOAD_NOT_AN_OBJECT));
        };
        if cx.reads.is_shutting_down() {
            return Err(Refusal::new(join::REALTIME_RESTARTING));
        }
        // The runner read the tenant for this join (`Core::tenant_need`).
        let tenant = match &cx.tenant {
            Some(TenantRead::Missing) => return Err(Refusal::closing(join::TENANT_NOT_FOUND)),
            Some(TenantRead::Failed(e)) => {
                tracing::error!(tenant = %self.tenant_id, error = %e, "tenant lookup failed at join");
                return Err(Refusal::new(join::UNKNOWN_ERROR));
            }
            _ => self.tenant.clone(),
        };
        if tenant.suspend {
            return Err(Refusal::new(join::REALTIME_DISABLED_FOR_TENANT));
        }
        let cfg = read_config(sub, payload);
        let presence_on = cfg.presence_enabled || tenant.presence_enabled;
        if tenant.private_only && !cfg.private {
            return Err(Refusal::new(join::PRIVATE_ONLY));
        }
        let limits = &tenant.limits;
        if !self.counted
            && cx.reads.connected_count(&tenant.external_id) as u64 >= limits.max_concurrent_users
        {
            return Err(Refusal::new(join::CONNECTION_RATE_LIMIT));
        }
        if cx
            .reads
            .joins_triggered(&tenant.external_id, limits.max_joins_per_second)
        {
            return Err(Refusal::closing(join::CLIENT_JOIN_RATE_LIMIT));
        }
        cx.push(Effect::Count(Counter::Joins, 1));
        let others = self.channels.keys().filter(|t| **t != m.topic).count() as u64;
        if others >= limits.max_channels_per_client {
            return Err(Refusal::new(join::CHANNEL_RATE_LIMIT));
        }
        let token = join_token(payload, &self.connect_token);
        let now = cx.now.unix_secs();
        let claims = jwt::verify(
            &token,
            tenant.keys(),
            &cx.reads.settings().jwt_claim_validators,
            now,
        )
        .map_err(|e| Refusal::new(e.join_reason()))?;
        if jwt::exp_seconds(&claims).map(|e| e <= now).unwrap_or(false) {
            return Err(Refusal::new(JwtError::ExpirationInvalid.join_reason()));
        }
        if cfg.replay.is_some() && !cfg.private {
            return Err(Refusal::new(join::REPLAY_PUBLIC));
        }
        Ok(PendingJoin {
            m: m.clone(),
            sub: sub.to_string(),
            cfg,
            tenant_id: tenant.external_id.clone(),
            token,
            claims,
            presence_on,
            attempt: 0,
        })
    }

    /// Joins: subscribes the channel, replies, and sends what follows the reply.
    fn finish_join(
        &mut self,
        join: PendingJoin,
        policies: Policies,
        replayed: Vec<DbBroadcast>,
        cx: &mut Cx<'_>,
    ) {
        let PendingJoin {
            m,
            sub,
            cfg,
            token,
            claims,
            presence_on,
            ..
        } = join;
        let sub = sub.as_str();
        // Success from here on.
        let old = self.remove_channel(&m.topic, cx.fx);
        let key = TopicKey {
            tenant: self.tenant_id.clone(),
            private: cfg.private,
            sub: Arc::from(sub),
        };
        let bindings: Vec<(u32, Value)> = cfg
            .bindings
            .into_iter()
            .map(|b| (binding_id(&b), b))
            .collect();
        let push_ref = m.join_ref.clone().or_else(|| m.msg_ref.clone());
        let mut channel = Channel {
            id: cx.reads.next_id(),
            topic: m.topic.clone(),
            key: key.clone(),
            push_ref,
            join_ref: m.join_ref.clone(),
            private: cfg.private,
            ack: cfg.ack,
            self_broadcast: cfg.self_broadcast,
            presence_key: cfg
                .presence_key
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            presence_on,
            tracked: None,
            presence_window: None,
            token,
            exp: jwt::exp_seconds(&claims),
            perms: Arc::new(if cfg.private {
                ChannelPerms::from_policies(&policies)
            } else {
                ChannelPerms::open()
            }),
            policies,
            bindings,
            legacy: cfg.legacy,
            cdc: None,
            cdc_generation: 0,
            token_check_at: None,
            refreshes: (cx.now.std(), 0),
        };
        cx.push(Effect::Subscribe {
            key,
            channel_id: channel.id,
            perms: channel.perms.clone(),
        });
        let echoed: Vec<Value> = channel
            .bindings
            .iter()
            .map(|(id, b)| {
                let mut b = b.clone();
                if let Value::Object(o) = &mut b {
                    o.insert("id".to_string(), json!(id));
                }
                b
            })
            .collect();
        cx.send(Outbound::Message(reply::join_ok(
            m.join_ref.clone(),
            m.msg_ref.clone(),
            &m.topic,
            echoed,
        )));
        if let Some(old) = old {
            cx.send(old.close_frame());
        }
        self.mark_counted(cx);
        cx.push(Effect::Metric(Metric::Joined));
        cx.push(Effect::EnsureDbBroadcasts);
        let channel_id = channel.id;
        let has_bindings = !channel.bindings.is_empty();
        channel.arm_token_timer(cx.now);
        if !replayed.is_empty() {
            cx.push(Effect::MarkReplayed {
                perms: channel.perms.clone(),
                ids: replayed.iter().map(|m| m.id.clone()).collect(),
            });
        }
        for msg in replayed {
            cx.send(channel.replayed(msg));
        }
        if presence_on && (!channel.private || channel.policies.presence_read == Some(true)) {
            Core::send_presence_state(&channel, cx);
        }
        self.channels.insert(m.topic.clone(), Box::new(channel));
        if has_bindings {
            self.subscribe_changes(channel_id, cx);
        }
        if cfg.replication_ready {
            let deadline = cx.now.std() + cx.reads.settings().replication_ready_timeout;
            cx.push(Effect::Control(Control::ReplicationCheck {
                channel_id,
                deadline,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_selection() {
        let p = |v: Value| v.as_object().cloned().unwrap();
        let c: Arc<str> = Arc::from("c");
        assert_eq!(&*join_token(&p(json!({})), &c), "c");
        assert_eq!(&*join_token(&p(json!({"access_token":"a"})), &c), "a");
        assert_eq!(&*join_token(&p(json!({"access_token":"sb_x"})), &c), "c");
        assert_eq!(
            &*join_token(&p(json!({"access_token":"a","user_token":"u"})), &c),
            "u"
        );
        assert_eq!(&*join_token(&p(json!({"access_token":1})), &c), "c");
        // The same token as the connect one is shared, not copied.
        assert!(Arc::ptr_eq(
            &join_token(&p(json!({"access_token":"c"})), &c),
            &c
        ));
    }

    #[test]
    fn legacy_topic_binding() {
        assert_eq!(
            legacy_binding("public:todos:id=eq.1"),
            Some(json!({"schema":"public","table":"todos","filter":"id=eq.1"}))
        );
        assert_eq!(legacy_binding("room1"), Some(json!({"schema":"room1"})));
    }

    #[test]
    fn lenient_config() {
        let p = json!({"config":{"private":"yes","broadcast":{"ack":"TRUE"},"presence":{"key":5}}});
        let c = read_config("r", p.as_object().unwrap());
        assert!(!c.private);
        assert!(c.ack);
        assert_eq!(c.presence_key.as_deref(), Some("5"));
        assert!(!c.legacy);
    }
}
