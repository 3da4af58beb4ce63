//! The socket side of a session: applies the effects the session core returns against the
//! gateway (its own queue, the hub, the rate counters, spawned checks, timers, the
//! publisher's backpressure wait).

use crate::gateway::effect::{Counter, Effect};
use crate::gateway::hub::Subscriber;
use crate::gateway::session::Session;

impl Session {
    /// Applies `fx` in order.
    pub(crate) async fn apply(&mut self, fx: Vec<Effect>) {
        for effect in fx {
            self.apply_one(effect).await;
        }
    }

    async fn apply_one(&mut self, effect: Effect) {
        match effect {
            Effect::Send(msg) => {
                self.link.send(&msg);
            }
            Effect::Broadcast {
                key,
                msg,
                exclude,
                max_events_per_second,
                ack,
            } => {
                let delivered =
                    self.gw
                        .deliver_broadcast(&key, &msg, exclude, max_events_per_second);
                if let Some(ack) = ack {
                    self.link.send(&ack);
                }
                // The next frame of this socket is read once the receivers have room for it.
                delivered.drained(Some(self.link.id)).await;
            }
            Effect::Count(counter, n) => {
                let rates = self.gw.limits.rates(&self.link.tenant);
                match counter {
                    Counter::Joins => rates.joins.add(n),
                    Counter::Events => rates.events.add(n),
                    Counter::Presence => rates.presence.add(n),
                }
            }
            Effect::BroadcastPayload(size) => self.link.metrics.broadcast_payload(size),
            Effect::Close(code) => self.close(code),
            Effect::Subscribe {
                key,
                channel_id,
                perms,
            } => self.gw.hub.subscribe(
                key,
                Subscriber {
                    channel_id,
                    session: self.link.clone(),
                    perms,
                },
            ),
            Effect::After(delay, c) => {
                crate::gateway::control::spawn_after(&self.link.control, delay, c)
            }
        }
    }
}
