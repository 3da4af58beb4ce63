//! postgres_changes bindings of a channel (PROTOCOL.md §8): registration with the change
//! pipeline off the read loop, the outcome `system` messages, retries, and forwarding change
//! events to the socket (`{"ids","data"}`, or the bare change for legacy joins).

use std::time::Duration;

use rand::Rng;
use realtime_cdc::{CdcEvent, SubscribeError, SubscribeRequest, Subscription};
use realtime_protocol::{Message, Outbound, RawMessage};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::gateway::session::{Control, Session};

pub use realtime_cdc::binding_id;

/// Change events a channel may have queued before its socket counts as a slow consumer.
const SINK_CAPACITY: usize = 1024;

/// Message pushed when this process has no change pipeline at all.
const NO_PIPELINE: &str = "the Postgres Changes pipeline is not running";

/// The payload of a `postgres_changes` push, keys in upstream's (sorted) order; `data` is the
/// pipeline's text as is, so jsonb values keep the database's spacing.
#[derive(Serialize)]
struct ChangePayload<'a> {
    data: &'a RawValue,
    ids: &'a [u32],
}

/// The one field of a change a legacy join needs: its `type` names the event.
#[derive(Deserialize)]
struct ChangeType<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// The push for one change: `postgres_changes` with `{"data","ids"}`, or for a legacy join
/// the bare change under its `type` as event. `None` only if the text cannot be embedded,
/// which the pipeline never produces.
pub(crate) fn change_message(
    topic: &str,
    legacy: bool,
    ids: &[u32],
    data: std::sync::Arc<RawValue>,
) -> Option<RawMessage> {
    let (event, payload) = if legacy {
        let event = serde_json::from_str::<ChangeType<'_>>(data.get())
            .ok()
            .and_then(|t| t.kind)
            .map(|k| k.into_owned())
            .unwrap_or_else(|| "postgres_changes".to_string());
        (event, data)
    } else {
        let payload = serde_json::value::to_raw_value(&ChangePayload { data: &data, ids }).ok()?;
        (
            "postgres_changes".to_string(),
            std::sync::Arc::from(payload),
        )
    };
    Some(RawMessage {
        join_ref: None,
        msg_ref: None,
        topic: topic.to_string(),
        event,
        payload,
    })
}

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
        let control = self.link.control.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let msg = match ev {
                    CdcEvent::System(payload) => Outbound::Message(Message {
                        join_ref: push_ref.clone(),
                        msg_ref: None,
                        topic: fwd_topic.clone(),
                        event: "system".into(),
                        payload,
                    }),
                    CdcEvent::Change { ids, data } => {
                        match change_message(&fwd_topic, legacy, &ids, data) {
                            Some(m) => Outbound::Raw(m),
                            None => continue,
                        }
                    }
                };
                if !link.send(&msg) && link.kill.is_cancelled() {
                    return;
                }
            }
            // Every sender is gone: the subscription failed or was dropped (the session
            // ignores those), or the pipeline stopped under a live subscription.
            if !link.kill.is_cancelled() {
                let _ = control
                    .send(Control::CdcDown {
                        channel_id,
                        generation,
                    })
                    .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> std::sync::Arc<RawValue> {
        RawValue::from_string(text.to_string()).unwrap().into()
    }

    #[test]
    fn change_payload_embeds_the_data_text_unchanged() {
        let data = raw(r#"{"record": {"j": {"a": 1}}, "type": "INSERT"}"#);
        let m = change_message("realtime:r", false, &[3, 1], data).unwrap();
        assert_eq!(m.event, "postgres_changes");
        assert_eq!(
            m.payload.get(),
            r#"{"data":{"record": {"j": {"a": 1}}, "type": "INSERT"},"ids":[3,1]}"#
        );
    }

    #[test]
    fn legacy_joins_get_the_bare_change_under_its_type() {
        let text = r#"{"record": {"id": 1}, "type": "UPDATE"}"#;
        let m = change_message("realtime:r", true, &[3], raw(text)).unwrap();
        assert_eq!(m.event, "UPDATE");
        assert_eq!(m.payload.get(), text);
    }
}
