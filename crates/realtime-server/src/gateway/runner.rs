//! The socket side of a session: applies the effects the session core returns against the
//! gateway (its own queue, the hub, the presence store, the rate counters, spawned checks,
//! timers, the publisher's backpressure wait), and feeds what the spawned work finds back to
//! the session as [`Control`] events.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use realtime_cdc::{SubscribeError, SubscribeRequest};
use realtime_protocol::{events, reply, Outbound};

use crate::gateway::authorization::{Extension, Policies};
use crate::gateway::broadcast::Delivered;
use crate::gateway::change_sink::ChannelSink;
use crate::gateway::control::Control;
use crate::gateway::effect::{ChangesRequest, Counter, Effect, Fanout, Metric};
use crate::gateway::hub::Subscriber;
use crate::gateway::session::Session;
use crate::gateway::write_check::WriteVerdict;

/// Refused joins per socket whose reply waits out the backoff at the same time.
const MAX_DELAYED_REFUSALS: usize = 16;

/// Message pushed when this process has no change pipeline at all.
const NO_PIPELINE: &str = "the Postgres Changes pipeline is not running";

impl Session {
    /// Applies `fx` in order, waiting for a broadcast's congested receivers before the next.
    pub(crate) async fn apply(&mut self, fx: Vec<Effect>) {
        for effect in fx {
            if let Some(delivered) = self.apply_one(effect) {
                // The next frame of this socket is read once the receivers have room for it.
                delivered.drained(Some(self.link.id)).await;
            }
        }
    }

    /// Applies `fx` in order without waiting for anyone.
    pub(crate) fn apply_now(&mut self, fx: Vec<Effect>) {
        for effect in fx {
            self.apply_one(effect);
        }
    }

    /// Applies one effect; a broadcast hands back what its publisher should wait for.
    fn apply_one(&mut self, effect: Effect) -> Option<Delivered> {
        let gw = &self.gw;
        let link = &self.link;
        match effect {
            Effect::Send(msg) => {
                link.send(&msg);
            }
            Effect::Broadcast(fanout) => {
                let Fanout {
                    key,
                    msg,
                    exclude,
                    max_events_per_second,
                    ack,
                } = *fanout;
                let delivered = gw.deliver_broadcast(&key, &msg, exclude, max_events_per_second);
                if let Some(ack) = ack {
                    link.send(&ack);
                }
                return Some(delivered);
            }
            Effect::Count(counter, n) => {
                let rates = gw.limits.rates(&link.tenant);
                match counter {
                    Counter::Joins => rates.joins.add(n),
                    Counter::Events => rates.events.add(n),
                    Counter::Presence => rates.presence.add(n),
                }
            }
            Effect::Metric(m) => match m {
                Metric::InputBytes(n) => link.metrics.input_bytes(n),
                Metric::BroadcastPayload(n) => link.metrics.broadcast_payload(n),
                Metric::PresencePayload(n) => link
                    .metrics
                    .payload(crate::metrics::MessageType::Presence, n),
                Metric::Joined => link.metrics.joined(),
            },
            Effect::Close(code) => self.close(code),
            Effect::Drop => link.kill.cancel(),
            Effect::Subscribe {
                key,
                channel_id,
                perms,
            } => gw.hub.subscribe(
                key,
                Subscriber {
                    channel_id,
                    session: link.clone(),
                    perms,
                },
            ),
            Effect::Unsubscribe { key, channel_id } => gw.hub.unsubscribe(&key, channel_id),
            Effect::SetPerms { perms, policies } => perms.set(&policies),
            Effect::MarkReplayed { perms, ids } => {
                if let Ok(mut replayed) = perms.replayed.lock() {
                    replayed.extend(ids);
                }
            }
            Effect::PresenceState {
                key,
                topic,
                push_ref,
            } => {
                let state = gw.presence.state(&key);
                link.send(&Outbound::Message(reply::push(
                    push_ref,
                    &topic,
                    events::PRESENCE_STATE,
                    state,
                )));
                gw.limits.rates(&link.tenant).presence.add(1);
            }
            Effect::Track {
                key,
                pkey,
                channel_id,
                meta,
            } => {
                let diff = gw.presence.track(&key, &pkey, channel_id, &meta);
                crate::gateway::presence::fan_out_diff(gw, &key, diff);
            }
            Effect::Untrack {
                key,
                pkey,
                channel_id,
            } => {
                if let Some(diff) = gw.presence.untrack(&key, &pkey, channel_id) {
                    crate::gateway::presence::fan_out_diff(gw, &key, diff);
                }
            }
            Effect::CountUser => {
                if link
                    .counted
                    .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    *gw.users.entry(link.tenant.to_string()).or_insert(0) += 1;
                }
            }
            Effect::EnsureDbBroadcasts => gw.ensure_db_broadcasts(&link.tenant),
            Effect::RefuseJoin {
                reply,
                reason,
                close,
            } => self.refuse_join(reply, &reason, close),
            Effect::CheckJoin { join, headers } => {
                let (gw, link) = (gw.clone(), link.clone());
                tokio::spawn(async move {
                    let verdict = crate::gateway::join::database_checks(&gw, &join, headers).await;
                    link.control(Control::JoinChecked {
                        join,
                        verdict: Box::new(verdict),
                    });
                });
            }
            Effect::CheckWrite {
                topic,
                channel_id,
                ext,
                policies,
                ctx,
            } => {
                let (gw, link) = (gw.clone(), link.clone());
                tokio::spawn(async move {
                    let tenant = link.tenant.clone();
                    let mut result = gw.write_policies(&tenant, &ctx, policies).await;
                    if ext == Extension::Presence {
                        if let Ok(p) = result {
                            if p.presence_read.is_none() {
                                result = gw.read_policies(&tenant, &ctx, true, p).await;
                            }
                        }
                    }
                    let result = result.map_err(|e| {
                        tracing::error!(tenant = %tenant, topic = %topic, error = %e, "write policy check failed");
                        e.to_string()
                    });
                    link.control(Control::WriteChecked(Box::new(WriteVerdict {
                        topic,
                        channel_id,
                        ext,
                        result,
                    })));
                });
            }
            Effect::CheckRefresh {
                topic,
                channel_id,
                before,
                role_changed,
                claims,
                with_presence,
                ctx,
            } => {
                let (gw, link) = (gw.clone(), link.clone());
                tokio::spawn(async move {
                    let result = gw
                        .read_policies(&link.tenant, &ctx, with_presence, Policies::default())
                        .await;
                    link.control(Control::Reauthorized(Box::new(
                        crate::gateway::access_token::RefreshVerdict {
                            topic,
                            channel_id,
                            before,
                            role_changed,
                            claims,
                            result,
                        },
                    )));
                });
            }
            Effect::SubscribeChanges(req) => self.subscribe_changes(*req),
            Effect::UpdateClaims { channel_id, claims } => {
                if let Some(sub) = self.core.subscription(channel_id) {
                    sub.update_claims(claims);
                }
            }
            Effect::EndChanges(sub) => drop(sub),
            Effect::Control(c) => link.control(c),
            Effect::After(delay, c) => {
                crate::gateway::control::spawn_after(&link.control, delay, c)
            }
        }
        None
    }

    /// Answers a refused join after upstream's backoff. A socket flooding refused joins does
    /// not get a sleeping task (and its reply) per attempt: past a few, replies go out at once.
    fn refuse_join(&self, frame: Outbound, reason: &str, close: bool) {
        self.link.metrics.join_refused(reason);
        let link = self.link.clone();
        let pending = self.refusals_pending.clone();
        if pending.fetch_add(1, Ordering::SeqCst) >= MAX_DELAYED_REFUSALS {
            pending.fetch_sub(1, Ordering::SeqCst);
            link.send(&frame);
            if close {
                link.control(Control::Close(1001));
            }
            return;
        }
        let delay = self.gw.settings.channel_error_backoff;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            pending.fetch_sub(1, Ordering::SeqCst);
            link.send(&frame);
            if close {
                link.control(Control::Close(1001));
            }
        });
    }

    /// Registers a channel's bindings with the change pipeline off the socket's task; the
    /// pipeline then pushes straight onto the socket's queue, with no task per channel.
    fn subscribe_changes(&self, req: ChangesRequest) {
        let ChangesRequest {
            channel_id,
            generation,
            topic,
            push_ref,
            legacy,
            claims,
            bindings,
        } = req;
        let sink = Arc::new(ChannelSink {
            link: self.link.clone(),
            channel_id,
            generation,
            topic: topic.clone(),
            push_ref,
            legacy,
        });
        let req = SubscribeRequest {
            topic,
            claims,
            bindings,
            sink,
        };
        let (gw, link) = (self.gw.clone(), self.link.clone());
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
}
