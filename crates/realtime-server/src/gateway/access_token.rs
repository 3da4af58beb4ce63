//! Channel tokens over time (PROTOCOL.md §10): the `access_token` event and the expiry timer
//! that re-verifies a channel's token and stops the channel once it lapses.

use std::time::Duration;

use realtime_protocol::Message;
use serde_json::Value;

use crate::gateway::channel::Channel;
use crate::gateway::jwt::{self, JwtError};
use crate::gateway::session::{Control, Session};

/// Longest time between two re-verifications of a channel's token.
const MAX_RECHECK: Duration = Duration::from_secs(300);

impl Session {
    /// Arms the timer that re-verifies the channel's token at `min(5 min, exp - now)`.
    pub(crate) fn arm_token_timer(&self, ch: &Channel) {
        let Some(exp) = jwt::exp_seconds(&ch.claims) else {
            return;
        };
        let now_ms = chrono::Utc::now().timestamp_millis();
        let until_ms = exp.saturating_mul(1000).saturating_sub(now_ms).max(0) as u64;
        // A little past the expiry second, so the check sees the token as expired.
        let delay = Duration::from_millis(until_ms + 10).min(MAX_RECHECK);
        self.after(
            delay,
            Control::TokenCheck {
                channel_id: ch.id,
                generation: ch.token_generation,
            },
        );
    }

    fn verify_channel_token(&self, token: &str) -> Result<jwt::Claims, JwtError> {
        let now = jwt::now_secs();
        let claims = jwt::verify(
            token,
            self.tenant.keys(),
            &self.gw.settings.jwt_claim_validators,
            now,
        )?;
        if jwt::exp_seconds(&claims).map(|e| e <= now).unwrap_or(false) {
            return Err(JwtError::ExpirationInvalid);
        }
        Ok(claims)
    }

    pub(crate) async fn on_token_check(&mut self, channel_id: u64, generation: u64) {
        let Some(topic) = self.topic_of(channel_id) else {
            return;
        };
        let _ = self.fresh_tenant().await;
        let Some(ch) = self.channels.get(&topic) else {
            return;
        };
        if ch.token_generation != generation {
            return;
        }
        match self.verify_channel_token(&ch.token.clone()) {
            Ok(_) => {
                if let Some(ch) = self.channels.get(&topic) {
                    self.arm_token_timer(ch);
                }
            }
            Err(e) => self.stop_channel(&topic, &e.channel_message()),
        }
    }

    pub(crate) async fn on_access_token(&mut self, m: Message) {
        let token = match m.payload.get("access_token") {
            Some(Value::Null) => return,
            Some(Value::String(s)) => s.clone(),
            _ => {
                self.count_event();
                return;
            }
        };
        let _ = self.fresh_tenant().await;
        let Some(ch) = self.channels.get(&m.topic) else {
            return;
        };
        if token.starts_with("sb_") || token == ch.token {
            return;
        }
        match self.verify_channel_token(&token) {
            Err(e) => self.stop_channel(&m.topic, &e.channel_message()),
            Ok(claims) => {
                let Some(ch) = self.channels.get_mut(&m.topic) else {
                    return;
                };
                ch.token = token;
                ch.claims = claims.clone();
                let before = std::mem::take(&mut ch.policies);
                if let Err(message) = self.reauthorize(&m.topic, before).await {
                    self.stop_channel(&m.topic, &message);
                    return;
                }
                let Some(ch) = self.channels.get_mut(&m.topic) else {
                    return;
                };
                ch.token_generation += 1;
                let id = ch.id;
                let has_bindings = !ch.bindings.is_empty();
                let resubscribe = match &ch.cdc {
                    Some(sub) => {
                        sub.update_claims(Value::Object(claims.clone()));
                        false
                    }
                    None => has_bindings,
                };
                ch.claims = claims;
                if let Some(ch) = self.channels.get(&m.topic) {
                    self.arm_token_timer(ch);
                }
                if resubscribe {
                    self.subscribe_changes(id);
                }
            }
        }
    }
}
