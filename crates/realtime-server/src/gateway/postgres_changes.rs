//! postgres_changes bindings of a channel (PROTOCOL.md §8): registration with the change
//! pipeline off the read loop (asked for as [`Effect::SubscribeChanges`]), the outcome `system`
//! messages and retries. Events reach the socket through the channel's
//! [`crate::gateway::change_sink::ChannelSink`].

use std::time::Duration;

use rand::Rng;
use realtime_cdc::{SubscribeError, Subscription};
use realtime_protocol::events;
use serde_json::Value;

use crate::gateway::control::Control;
use crate::gateway::core::{Core, Cx};
use crate::gateway::effect::{ChangesRequest, Effect};

pub use realtime_cdc::binding_id;

impl Core {
    /// Asks for the channel's bindings to be registered with the change pipeline; the outcome
    /// comes back as [`Control::CdcResult`].
    pub(crate) fn subscribe_changes(&mut self, channel_id: u64, cx: &mut Cx<'_>) {
        let Some(topic) = self.topic_of(channel_id) else {
            return;
        };
        let Some(ch) = self.channels.get_mut(&topic) else {
            return;
        };
        if let Some(old) = ch.cdc.take() {
            cx.push(Effect::EndChanges(old));
        }
        ch.cdc_generation += 1;
        cx.push(Effect::SubscribeChanges(Box::new(ChangesRequest {
            channel_id,
            generation: ch.cdc_generation,
            topic,
            push_ref: ch.push_ref.clone(),
            legacy: ch.legacy,
            claims: Value::Object(ch.claims()),
            bindings: ch.bindings.clone(),
        })));
    }

    /// Keeps a successful subscription; reports a failure and schedules a retry when upstream
    /// would retry.
    pub(crate) fn on_cdc_result(
        &mut self,
        channel_id: u64,
        generation: u64,
        result: Result<Subscription, SubscribeError>,
        cx: &mut Cx<'_>,
    ) {
        let stale = |result: Result<Subscription, SubscribeError>, cx: &mut Cx<'_>| {
            // A subscription nobody keeps is ended.
            if let Ok(sub) = result {
                cx.push(Effect::EndChanges(sub));
            }
        };
        let Some(topic) = self.topic_of(channel_id) else {
            return stale(result, cx);
        };
        let Some(ch) = self.channels.get_mut(&topic) else {
            return stale(result, cx);
        };
        if ch.cdc_generation != generation {
            return stale(result, cx);
        }
        match result {
            Ok(sub) => ch.cdc = Some(sub),
            Err(e) => {
                tracing::error!(tenant = %self.tenant_id, topic = %topic, error = %e, "UnableToSubscribeToPostgres");
                cx.send(ch.push(events::SYSTEM, e.system_payload(&topic)));
                if e.is_retryable() {
                    let delay = Duration::from_millis(rand::thread_rng().gen_range(5000..10000));
                    cx.push(Effect::After(
                        delay,
                        Control::CdcRetry {
                            channel_id,
                            generation,
                        },
                    ));
                }
            }
        }
    }

    /// The pipeline stopped under this channel's live subscription: like upstream's
    /// `postgres_cdc_rls_down`, subscribe again after 1–3 s.
    pub(crate) fn on_cdc_down(&mut self, channel_id: u64, generation: u64, cx: &mut Cx<'_>) {
        let Some(topic) = self.topic_of(channel_id) else {
            return;
        };
        let Some(ch) = self.channels.get_mut(&topic) else {
            return;
        };
        if ch.cdc_generation != generation || ch.cdc.is_none() || cx.reads.is_shutting_down() {
            return;
        }
        tracing::info!(tenant = %self.tenant_id, topic = %topic, "Postgres Changes pipeline stopped, subscribing again");
        if let Some(sub) = ch.cdc.take() {
            cx.push(Effect::EndChanges(sub));
        }
        let delay = Duration::from_millis(rand::thread_rng().gen_range(1000..3000));
        cx.push(Effect::After(
            delay,
            Control::CdcRetry {
                channel_id,
                generation,
            },
        ));
    }

    /// A scheduled retry, unless the channel re-subscribed or left meanwhile.
    pub(crate) fn on_cdc_retry(&mut self, channel_id: u64, generation: u64, cx: &mut Cx<'_>) {
        let current = self
            .topic_of(channel_id)
            .and_then(|t| self.channels.get(&t))
            .map(|c| c.cdc_generation == generation && c.cdc.is_none())
            .unwrap_or(false);
        if current {
            self.subscribe_changes(channel_id, cx);
        }
    }
}
