//! Channel tokens over time (PROTOCOL.md §10): the `access_token` event and the expiry timer
//! that re-verifies a channel's token and stops the channel once it lapses.

use std::time::{Duration, Instant};

use realtime_protocol::Message;
use serde_json::Value;

use crate::gateway::authorization::{judge_refresh, Policies, PolicyError};
use crate::gateway::channel::Channel;
use crate::gateway::core::{Core, Cx, Now};
use crate::gateway::effect::{Counter, Effect};
use crate::gateway::jwt::Claims;
use crate::gateway::jwt::{self, JwtError};

/// Longest time between two re-verifications of a channel's token.
const MAX_RECHECK: Duration = Duration::from_secs(300);

/// Most `access_token` refreshes a channel gets verified per second; the rest are ignored (the
/// channel keeps its current token). Clients refresh tokens every few minutes at most; a flood
/// would otherwise cost a signature check, a timer and, on private channels, a policy check in
/// the tenant database for every message.
const MAX_REFRESHES_PER_SECOND: u32 = 5;

impl Channel {
    /// Sets when the channel's token is verified again: `min(5 min, exp - now)`, replacing
    /// the time set before.
    pub(crate) fn arm_token_timer(&mut self, now: Now) {
        self.token_check_at = None;
        let Some(exp) = self.exp else {
            return;
        };
        let until_ms = exp.saturating_mul(1000).saturating_sub(now.unix_ms).max(0) as u64;
        // A little past the expiry second, so the check sees the token as expired.
        let delay = Duration::from_millis(until_ms + 10).min(MAX_RECHECK);
        self.token_check_at = Some(now.at + delay);
    }

    /// Counts a refresh; false when this one is over the per-second allowance.
    fn allow_refresh(&mut self, now: Instant) -> bool {
        let (start, count) = &mut self.refreshes;
        if now.saturating_duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        *count += 1;
        *count <= MAX_REFRESHES_PER_SECOND
    }
}

impl Core {
    fn verify_channel_token(&self, token: &str, cx: &Cx<'_>) -> Result<jwt::Claims, JwtError> {
        let now = cx.now.unix_secs();
        let claims = jwt::verify(
            token,
            self.tenant.keys(),
            &cx.reads.settings().jwt_claim_validators,
            now,
        )?;
        if jwt::exp_seconds(&claims).map(|e| e <= now).unwrap_or(false) {
            return Err(JwtError::ExpirationInvalid);
        }
        Ok(claims)
    }

    /// Verifies again the tokens of the channels whose check time has come.
    pub(crate) fn check_due_tokens(&mut self, cx: &mut Cx<'_>) {
        let now = cx.now.at;
        let due: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, ch)| ch.token_check_at.is_some_and(|at| at <= now))
            .map(|(topic, _)| topic.clone())
            .collect();
        for topic in due {
            if let Some(ch) = self.channels.get_mut(&topic) {
                ch.token_check_at = None;
            }
            self.on_token_check(&topic, cx);
        }
    }

    fn on_token_check(&mut self, topic: &str, cx: &mut Cx<'_>) {
        let Some(ch) = self.channels.get(topic) else {
            return;
        };
        match self.verify_channel_token(&ch.token.clone(), cx) {
            Ok(_) => {
                if let Some(ch) = self.channels.get_mut(topic) {
                    ch.arm_token_timer(cx.now);
                }
            }
            Err(e) => self.stop_channel(topic, &e.channel_message(), cx),
        }
    }

    pub(crate) fn on_access_token(&mut self, m: Message, cx: &mut Cx<'_>) {
        let token = match m.payload.get("access_token") {
            Some(Value::Null) => return,
            Some(Value::String(s)) => s.clone(),
            _ => {
                cx.push(Effect::Count(Counter::Events, 1));
                return;
            }
        };
        let Some(ch) = self.channels.get_mut(&m.topic) else {
            return;
        };
        if token.starts_with("sb_") || *token == *ch.token {
            return;
        }
        if !ch.allow_refresh(cx.now.std()) {
            tracing::debug!(tenant = %self.tenant_id, "access_token refresh over the per-second allowance, ignored");
            return;
        }
        match self.verify_channel_token(&token, cx) {
            Err(e) => self.stop_channel(&m.topic, &e.channel_message(), cx),
            Ok(claims) => {
                let Some(ch) = self.channels.get_mut(&m.topic) else {
                    return;
                };
                let old = ch.claims();
                ch.token = std::sync::Arc::from(token);
                ch.exp = jwt::exp_seconds(&claims);
                if claims == old {
                    // Same identity, same permissions: nothing to check again.
                    ch.arm_token_timer(cx.now);
                    return;
                }
                let role_changed = claims.get("role") != old.get("role");
                let before = std::mem::take(&mut ch.policies);
                if ch.private {
                    self.reauthorize_then(&m.topic, before, role_changed, claims, cx);
                } else {
                    self.finish_refresh(&m.topic, role_changed, claims, cx);
                }
            }
        }
    }

    /// Asks for a private channel's read check for its new token, off the socket's task; the
    /// channel's frames wait in order until [`Core::on_reauthorized`].
    fn reauthorize_then(
        &mut self,
        topic: &str,
        before: Policies,
        role_changed: bool,
        claims: Claims,
        cx: &mut Cx<'_>,
    ) {
        let (Some(ch), Some(ctx)) = (self.channels.get(topic), self.auth_context(topic)) else {
            return;
        };
        let (channel_id, with_presence) = (ch.id, ch.presence_on);
        self.park_topic(topic);
        cx.push(Effect::CheckRefresh {
            topic: topic.to_string(),
            channel_id,
            before,
            role_changed,
            claims,
            with_presence,
            ctx,
        });
    }

    /// A private channel's read check after a token change answered.
    pub(crate) fn on_reauthorized(&mut self, v: RefreshVerdict, cx: &mut Cx<'_>) {
        let queue = self.parked.take(&v.topic).unwrap_or_default();
        if let Some(ch) = self.channels.get(&v.topic).filter(|c| c.id == v.channel_id) {
            let sub = ch.sub().to_string();
            match judge_refresh(&sub, v.before, v.result) {
                Err(message) => self.stop_channel(&v.topic, &message, cx),
                Ok(after) => {
                    self.set_policies(&v.topic, after, cx.fx);
                    self.finish_refresh(&v.topic, v.role_changed, v.claims, cx);
                }
            }
        }
        self.replay_parked(&v.topic, queue, cx);
    }

    /// The rest of a token change once the channel may keep reading.
    fn finish_refresh(&mut self, topic: &str, role_changed: bool, claims: Claims, cx: &mut Cx<'_>) {
        let Some(ch) = self.channels.get_mut(topic) else {
            return;
        };
        let id = ch.id;
        let has_bindings = !ch.bindings.is_empty();
        // A new role can change which tables and columns the bindings may read: subscribe
        // again, as upstream does after every refresh. The same role only changes the claims
        // the RLS gate uses for the next changes.
        let resubscribe = match &ch.cdc {
            Some(_) if !role_changed => {
                cx.push(Effect::UpdateClaims {
                    channel_id: id,
                    claims: Value::Object(claims),
                });
                false
            }
            _ => has_bindings,
        };
        ch.arm_token_timer(cx.now);
        if resubscribe {
            self.subscribe_changes(id, cx);
        }
    }
}

/// The tenant database's answer to a private channel's read check after a token change.
pub struct RefreshVerdict {
    pub(crate) topic: String,
    pub(crate) channel_id: u64,
    pub(crate) before: Policies,
    pub(crate) role_changed: bool,
    pub(crate) claims: Claims,
    pub(crate) result: Result<Policies, PolicyError>,
}

impl RefreshVerdict {
    /// The channel's topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }
}
