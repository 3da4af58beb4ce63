//! The socket end of a channel's Postgres Changes: the [`ChangeSink`] the tenant's pipeline
//! pushes into, straight onto the socket's bounded outbound queue, with each change's frame
//! encoded once and its bytes shared by every channel that receives the same frame.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Message as WsMessage;
use realtime_cdc::{CdcEvent, ChangeSink, SinkCache};
use realtime_protocol::{events, reply, Outbound, RawMessage, Vsn};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::gateway::control::Control;
use crate::gateway::hub::encode_ws;
use crate::gateway::outbound::SessionLink;

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

/// `{"data": data, "ids": ids}`. `None` only if the text cannot be embedded, which the
/// pipeline never produces.
fn change_payload(data: &RawValue, ids: &[u32]) -> Option<Arc<RawValue>> {
    serde_json::value::to_raw_value(&ChangePayload { data, ids })
        .ok()
        .map(Arc::from)
}

/// A `postgres_changes`-style push carrying `payload` as is.
fn raw_push(topic: &str, event: String, payload: Arc<RawValue>) -> RawMessage {
    RawMessage {
        join_ref: None,
        msg_ref: None,
        topic: topic.to_string(),
        event,
        payload,
    }
}

/// The push for one change: `postgres_changes` with `{"data","ids"}`, or for a legacy join
/// the bare change under its `type` as event. `None` only if the text cannot be embedded,
/// which the pipeline never produces.
pub(crate) fn change_message(
    topic: &str,
    legacy: bool,
    ids: &[u32],
    data: Arc<RawValue>,
) -> Option<RawMessage> {
    if legacy {
        let event = serde_json::from_str::<ChangeType<'_>>(data.get())
            .ok()
            .and_then(|t| t.kind)
            .map(|k| k.into_owned())
            .unwrap_or_else(|| events::POSTGRES_CHANGES.to_string());
        Some(raw_push(topic, event, data))
    } else {
        let payload = change_payload(&data, ids)?;
        Some(raw_push(
            topic,
            events::POSTGRES_CHANGES.to_string(),
            payload,
        ))
    }
}

/// What makes two channels' frames of one change differ, besides the topic.
#[derive(PartialEq, Eq)]
struct FrameKey {
    /// Empty for legacy joins, whose frame does not carry the ids.
    ids: Vec<u32>,
    legacy: bool,
    vsn: Vsn,
}

/// The frames of the change being delivered. It lives in the pipeline's [`SinkCache`] for
/// one delivery run; the pipeline hands a change's deliveries over consecutively, so keeping
/// only the current change is enough, and a different change starts it afresh.
#[derive(Default)]
pub(crate) struct ChangeFrames {
    /// The change the frames carry. Holding it keeps its address from being reused by
    /// another change, which makes the pointer comparison sound.
    data: Option<Arc<RawValue>>,
    /// `{"data","ids"}` per ids, shared across topics.
    payloads: HashMap<Vec<u32>, Arc<RawValue>>,
    /// Encoded frames per topic (few keys per topic: ids, legacy, serializer).
    frames: HashMap<String, Vec<(FrameKey, WsMessage)>>,
}

impl ChangeFrames {
    /// The frame of change `data` for a channel on `topic`; built on first request, then the
    /// same bytes for every channel asking for the same.
    pub(crate) fn frame(
        &mut self,
        data: &Arc<RawValue>,
        ids: &[u32],
        topic: &str,
        legacy: bool,
        vsn: Vsn,
    ) -> Option<WsMessage> {
        if !self.data.as_ref().is_some_and(|d| Arc::ptr_eq(d, data)) {
            *self = ChangeFrames {
                data: Some(data.clone()),
                ..ChangeFrames::default()
            };
        }
        let key = FrameKey {
            ids: if legacy { Vec::new() } else { ids.to_vec() },
            legacy,
            vsn,
        };
        if let Some((_, frame)) = self
            .frames
            .get(topic)
            .and_then(|list| list.iter().find(|(k, _)| *k == key))
        {
            return Some(frame.clone());
        }
        let msg = if legacy {
            change_message(topic, true, ids, data.clone())?
        } else {
            let payload = match self.payloads.get(ids) {
                Some(p) => p.clone(),
                None => {
                    let p = change_payload(data, ids)?;
                    self.payloads.insert(ids.to_vec(), p.clone());
                    p
                }
            };
            raw_push(topic, events::POSTGRES_CHANGES.to_string(), payload)
        };
        let frame = encode_ws(vsn, &Outbound::Raw(msg))?;
        self.frames
            .entry(topic.to_string())
            .or_default()
            .push((key, frame.clone()));
        Some(frame)
    }
}

/// One subscription attempt of a channel, as the pipeline sees it.
pub(crate) struct ChannelSink {
    /// The channel's socket.
    pub(crate) link: Arc<SessionLink>,
    /// The channel.
    pub(crate) channel_id: u64,
    /// The subscription attempt, so a stale attempt's notice is ignored.
    pub(crate) generation: u64,
    /// The channel's topic.
    pub(crate) topic: String,
    /// Join ref of the channel's own pushes (`system` messages).
    pub(crate) push_ref: Option<String>,
    /// Joined with the legacy payload: changes go out bare, under their `type`.
    pub(crate) legacy: bool,
}

impl std::fmt::Debug for ChannelSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSink")
            .field("tenant", &self.link.tenant)
            .field("session", &self.link.id)
            .field("channel_id", &self.channel_id)
            .field("topic", &self.topic)
            .finish()
    }
}

impl ChangeSink for ChannelSink {
    fn push(&self, event: CdcEvent, cache: &mut SinkCache) -> bool {
        let frame = match event {
            CdcEvent::System(payload) => encode_ws(
                self.link.vsn,
                &Outbound::Message(reply::push(
                    self.push_ref.clone(),
                    self.topic.clone(),
                    events::SYSTEM,
                    payload,
                )),
            ),
            CdcEvent::Change { ids, data } => cache.with(|frames: &mut ChangeFrames| {
                self.link.metrics.db_events.add(1);
                frames.frame(&data, &ids, &self.topic, self.legacy, self.link.vsn)
            }),
        };
        match frame {
            // A full queue disconnects the socket (the slow-consumer policy) and reads as
            // gone, as does a closed one.
            Some(frame) => self.link.push(frame),
            None => {
                // Not the channel's fault: it stays subscribed.
                tracing::warn!(tenant = %self.link.tenant, topic = %self.topic, "a Postgres Changes event could not be encoded, skipped");
                !self.link.kill.is_cancelled()
            }
        }
    }

    fn pipeline_stopped(&self) {
        if !self.link.kill.is_cancelled() {
            self.link.control(Control::CdcDown {
                channel_id: self.channel_id,
                generation: self.generation,
            });
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn raw(text: &str) -> Arc<RawValue> {
        RawValue::from_string(text.to_string()).unwrap().into()
    }

    /// The bytes of a text frame, to compare identity (same allocation) and content.
    fn text(frame: &WsMessage) -> &str {
        match frame {
            WsMessage::Text(t) => t.as_str(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    fn same_bytes(a: &WsMessage, b: &WsMessage) -> bool {
        std::ptr::eq(text(a).as_ptr(), text(b).as_ptr())
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

    #[test]
    fn a_change_is_encoded_once_per_topic_ids_and_serializer() {
        let data = raw(r#"{"record": {"id": 1}, "type": "INSERT"}"#);
        let mut frames = ChangeFrames::default();
        let mut get = |ids: &[u32], topic: &str, legacy: bool, vsn: Vsn| {
            frames.frame(&data, ids, topic, legacy, vsn).unwrap()
        };
        let a = get(&[1], "realtime:a", false, Vsn::V2);
        // Same topic, ids and serializer: the very same bytes.
        assert!(same_bytes(&a, &get(&[1], "realtime:a", false, Vsn::V2)));
        assert_eq!(
            text(&a),
            r#"[null,null,"realtime:a","postgres_changes",{"data":{"record": {"id": 1}, "type": "INSERT"},"ids":[1]}]"#
        );
        // Anything that shows in the frame gives another frame.
        let other_ids = get(&[2, 1], "realtime:a", false, Vsn::V2);
        let other_topic = get(&[1], "realtime:b", false, Vsn::V2);
        let v1 = get(&[1], "realtime:a", false, Vsn::V1);
        let legacy = get(&[1], "realtime:a", true, Vsn::V2);
        for f in [&other_ids, &other_topic, &v1, &legacy] {
            assert_ne!(text(f), text(&a));
        }
        assert!(text(&other_ids).contains(r#""ids":[2,1]"#));
        assert!(text(&other_topic).starts_with(r#"[null,null,"realtime:b""#));
        assert!(text(&v1).starts_with(r#"{"event":"postgres_changes""#));
        assert_eq!(
            text(&legacy),
            r#"[null,null,"realtime:a","INSERT",{"record": {"id": 1}, "type": "INSERT"}]"#
        );
        // Legacy frames do not carry the ids, so they are shared across ids.
        assert!(same_bytes(&legacy, &get(&[7], "realtime:a", true, Vsn::V2)));
        assert!(same_bytes(&v1, &get(&[1], "realtime:a", false, Vsn::V1)));
    }

    #[test]
    fn the_payload_is_built_once_per_ids_across_topics() {
        let data = raw(r#"{"type": "DELETE"}"#);
        let mut frames = ChangeFrames::default();
        frames.frame(&data, &[4], "realtime:a", false, Vsn::V2);
        frames.frame(&data, &[4], "realtime:b", false, Vsn::V1);
        frames.frame(&data, &[5], "realtime:b", false, Vsn::V1);
        assert_eq!(frames.payloads.len(), 2);
        assert_eq!(frames.frames.len(), 2);
    }

    #[test]
    fn another_change_with_equal_text_gets_its_own_frames() {
        let mut frames = ChangeFrames::default();
        let first = raw(r#"{"type": "INSERT"}"#);
        let a = frames
            .frame(&first, &[1], "realtime:a", false, Vsn::V2)
            .unwrap();
        let second = raw(r#"{"type": "INSERT"}"#);
        let b = frames
            .frame(&second, &[1], "realtime:a", false, Vsn::V2)
            .unwrap();
        assert_eq!(text(&a), text(&b));
        assert!(!same_bytes(&a, &b));
    }

    /// A socket's link with its outbound and control queues.
    fn link(vsn: Vsn, capacity: usize) -> Arc<SessionLink> {
        Arc::new(SessionLink::new(
            1,
            Arc::from("t"),
            vsn,
            capacity,
            usize::MAX,
            crate::metrics::Metrics::default().tenant("t"),
        ))
    }

    fn sink(link: &Arc<SessionLink>, topic: &str) -> ChannelSink {
        ChannelSink {
            link: link.clone(),
            channel_id: 1,
            generation: 1,
            topic: topic.to_string(),
            push_ref: Some("j1".into()),
            legacy: false,
        }
    }

    fn system(message: &str) -> CdcEvent {
        CdcEvent::System(realtime_cdc::system_message("realtime:a", "ok", message))
    }

    #[test]
    fn events_reach_the_socket_in_order_and_channels_share_frames() {
        let l1 = link(Vsn::V2, 16);
        let l2 = link(Vsn::V2, 16);
        let (s1, s2) = (sink(&l1, "realtime:a"), sink(&l2, "realtime:a"));
        let data = raw(r#"{"type": "INSERT"}"#);
        let change = || CdcEvent::Change {
            ids: vec![9],
            data: data.clone(),
        };
        let mut cache = SinkCache::default();
        assert!(s1.push(system("Subscribed to PostgreSQL"), &mut cache));
        assert!(s1.push(change(), &mut cache));
        assert!(s2.push(change(), &mut cache));
        assert!(s1.push(system("later"), &mut cache));

        let first = l1.out.try_recv().unwrap();
        assert_eq!(
            text(&first),
            r#"["j1",null,"realtime:a","system",{"channel":"a","extension":"postgres_changes","message":"Subscribed to PostgreSQL","status":"ok"}]"#
        );
        let c1 = l1.out.try_recv().unwrap();
        let c2 = l2.out.try_recv().unwrap();
        assert!(same_bytes(&c1, &c2), "{c1:?} / {c2:?}");
        assert!(text(&l1.out.try_recv().unwrap()).contains("later"));
        assert!(l1.out.try_recv().is_none());
    }

    #[test]
    fn a_full_socket_is_disconnected_and_reads_as_gone() {
        let l = link(Vsn::V1, 1);
        let s = sink(&l, "realtime:a");
        let mut cache = SinkCache::default();
        assert!(s.push(system("one"), &mut cache));
        assert!(!s.push(system("two"), &mut cache));
        assert!(l.kill.is_cancelled());
    }

    #[test]
    fn a_closed_socket_reads_as_gone() {
        let l = link(Vsn::V1, 4);
        l.out.close();
        let s = sink(&l, "realtime:a");
        assert!(!s.push(system("one"), &mut SinkCache::default()));
    }

    #[tokio::test]
    async fn a_stopped_pipeline_is_reported_to_the_session() {
        let l = link(Vsn::V1, 4);
        let mut s = sink(&l, "realtime:a");
        s.channel_id = 7;
        s.generation = 3;
        s.pipeline_stopped();
        match l.control.try_recv() {
            Some(Control::CdcDown {
                channel_id,
                generation,
            }) => assert_eq!((channel_id, generation), (7, 3)),
            _ => panic!("expected CdcDown"),
        }
    }
}
