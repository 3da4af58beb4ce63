//! postgres_changes bindings of a channel (PROTOCOL.md §8): registration with the change
//! pipeline off the read loop, the outcome `system` messages and retries. Events reach the
//! socket through the channel's [`ChannelSink`].

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use realtime_cdc::{SubscribeError, SubscribeRequest, Subscription};
use realtime_protocol::events;
use serde_json::Value;

use crate::gateway::change_sink::ChannelSink;
use crate::gateway::control::Control;
use crate::gateway::session::Session;

pub use realtime_cdc::binding_id;

/// Message pushed when this process has no change pipeline at all.
const NO_PIPELINE: &str = "the Postgres Changes pipeline is not running";

impl Session {
    /// Registers the channel's bindings with the change pipeline; the outcome comes back as
    /// [`Control::CdcResult`].
    pub(crate) fn subscribe_changes(&mut self, channel_id: u64) {
        let Some(topic) = self.topic_of(channel_id) else {
            return;
        };
        let Some(ch) = self.channels.get_mut(&topic) else {
            return;
        };
        ch.cdc = None;
        ch.cdc_generation += 1;
        let generation = ch.cdc_generation;
        // The pipeline pushes straight onto the socket's outbound queue: no task per channel.
        let sink = Arc::new(ChannelSink {
            link: self.link.clone(),
            channel_id,
            generation,
            topic: topic.clone(),
            push_ref: ch.push_ref.clone(),
            legacy: ch.legacy,
        });
        let req = SubscribeRequest {
            topic: topic.clone(),
            claims: Value::Object(ch.claims()),
            bindings: ch.bindings.clone(),
            sink,
        };
        let link = self.link.clone();
        let gw = self.gw.clone();
        tokio::spawn(async move {
            let row = gw.registry_row(&link.tenant).await;
            let result = match (&gw.cdc, row) {
                (Some(cdc), Some(row)) => cdc.subscribe(row, req).await,
                _ => Err(SubscribeError::Unavailable(NO_PIPELINE.to_string())),
            };
            link.control(Control::CdcResult {
                channel_id,
                generation,
                result: Box::new(result),
            });
        });
    }

    /// Keeps a successful subscription; reports a failure and schedules a retry when upstream
    /// would retry.
    pub(crate) fn on_cdc_result(
        &mut self,
        channel_id: u64,
        generation: u64,
        result: Result<Subscription, SubscribeError>,
    ) {
        let Some(topic) = self.topic_of(channel_id) else {
            return;
        };
        let Some(ch) = self.channels.get_mut(&topic) else {
            return;
        };
        if ch.cdc_generation != generation {
            return;
        }
        match result {
            Ok(sub) => ch.cdc = Some(sub),
            Err(e) => {
                tracing::error!(tenant = %self.link.tenant, topic = %topic, error = %e, "UnableToSubscribeToPostgres");
                let msg = ch.push(events::SYSTEM, e.system_payload(&topic));
                self.link.send(&msg);
                if e.is_retryable() {
                    let delay = Duration::from_millis(rand::thread_rng().gen_range(5000..10000));
                    self.after(
                        delay,
                        Control::CdcRetry {
                            channel_id,
                            generation,
                        },
                    );
                }
            }
        }
    }

    /// The pipeline stopped under this channel's live subscription: like upstream's
    /// `postgres_cdc_rls_down`, subscribe again after 1–3 s.
    pub(crate) fn on_cdc_down(&mut self, channel_id: u64, generation: u64) {
        let Some(topic) = self.topic_of(channel_id) else {
            return;
        };
        let Some(ch) = self.channels.get_mut(&topic) else {
            return;
        };
        if ch.cdc_generation != generation || ch.cdc.is_none() || self.gw.is_shutting_down() {
            return;
        }
        tracing::info!(tenant = %self.link.tenant, topic = %topic, "Postgres Changes pipeline stopped, subscribing again");
        ch.cdc = None;
        let delay = Duration::from_millis(rand::thread_rng().gen_range(1000..3000));
        self.after(
            delay,
            Control::CdcRetry {
                channel_id,
                generation,
            },
        );
    }

    /// A scheduled retry, unless the channel re-subscribed or left meanwhile.
    pub(crate) fn on_cdc_retry(&mut self, channel_id: u64, generation: u64) {
        let current = self
            .topic_of(channel_id)
            .and_then(|t| self.channels.get(&t))
            .map(|c| c.cdc_generation == generation && c.cdc.is_none())
            .unwrap_or(false);
        if current {
            self.subscribe_changes(channel_id);
        }
    }
}
