//! postgres_changes bindings of a channel (PROTOCOL.md §8): registration with the change
//! pipeline off the read loop, the outcome `system` messages, retries, and forwarding change
//! events to the socket (`{"ids","data"}`, or the bare change for legacy joins).

use std::time::Duration;

use rand::Rng;
use realtime_cdc::{CdcEvent, SubscribeError, SubscribeRequest, Subscription};
use realtime_protocol::{Message, Outbound};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::gateway::session::{Control, Session};

pub use realtime_cdc::binding_id;

/// Change events a channel may have queued before its socket counts as a slow consumer.
const SINK_CAPACITY: usize = 1024;

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
        let (sink, mut events) = mpsc::channel::<CdcEvent>(SINK_CAPACITY);
        let req = SubscribeRequest {
            topic: topic.clone(),
            claims: Value::Object(ch.claims.clone()),
            bindings: ch.bindings.clone(),
            sink,
        };
        // Forward change events to the socket for as long as the pipeline keeps the sink.
        let link = self.link.clone();
        let push_ref = ch.push_ref.clone();
        let legacy = ch.legacy;
        let fwd_topic = topic.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let msg = match ev {
                    CdcEvent::System(payload) => Message {
                        join_ref: push_ref.clone(),
                        msg_ref: None,
                        topic: fwd_topic.clone(),
                        event: "system".into(),
                        payload,
                    },
                    CdcEvent::Change { ids, data } => {
                        let data: Value = serde_json::from_str(data.get()).unwrap_or(Value::Null);
                        if legacy {
                            let event = data
                                .get("type")
                                .and_then(Value::as_str)
                                .unwrap_or("postgres_changes")
                                .to_string();
                            Message {
                                join_ref: None,
                                msg_ref: None,
                                topic: fwd_topic.clone(),
                                event,
                                payload: data,
                            }
                        } else {
                            Message {
                                join_ref: None,
                                msg_ref: None,
                                topic: fwd_topic.clone(),
                                event: "postgres_changes".into(),
                                payload: json!({"ids": ids, "data": data}),
                            }
                        }
                    }
                };
                if !link.send(&Outbound::Message(msg)) && link.kill.is_cancelled() {
                    break;
                }
            }
        });
        let link = self.link.clone();
        let gw = self.gw.clone();
        tokio::spawn(async move {
            let row = gw.registry_row(&link.tenant).await;
            let result = match (&gw.cdc, row) {
                (Some(cdc), Some(row)) => cdc.subscribe(row, req).await,
                _ => Err(SubscribeError::Unavailable(NO_PIPELINE.to_string())),
            };
            let _ = link
                .control
                .send(Control::CdcResult {
                    channel_id,
                    generation,
                    result,
                })
                .await;
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
                tracing::warn!(tenant = %self.link.tenant, topic = %topic, error = %e, "UnableToSubscribeToPostgres");
                let msg = ch.push("system", e.system_payload(&topic));
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
