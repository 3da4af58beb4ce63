//! Where a channel's events go: the [`ChangeSink`] the gateway implements over its sockets,
//! and the [`SinkCache`] that lets one delivery run build shared output once.

use std::any::Any;

use crate::CdcEvent;

/// A channel's receiving end, called by the tenant's pipeline.
///
/// Pushes never wait: a channel that can't keep up is the sink's business (the gateway
/// disconnects a slow socket), so one slow channel never stalls the tenant's pipeline.
pub trait ChangeSink: Send + Sync + std::fmt::Debug {
    /// Hands over one event without waiting. Returns `false` when the channel is gone (left,
    /// or its socket closed); the pipeline then unsubscribes it.
    ///
    /// The events of one delivery run share `cache`: consecutive pushes of the same change
    /// to many channels can reuse what the first one built.
    fn push(&self, event: CdcEvent, cache: &mut SinkCache) -> bool;

    /// The pipeline stopped under this live subscription (the tenant was stopped or its
    /// settings changed): no further event arrives, and the channel should subscribe again.
    fn pipeline_stopped(&self);
}

/// Scratch state shared by the pushes of one delivery run and dropped at its end, so nothing
/// built for one change outlives its delivery. The pipeline does not look inside: each sink
/// type keeps its own state here (e.g. the gateway's encoded frames of the current change).
#[derive(Default)]
pub struct SinkCache {
    state: Option<Box<dyn Any + Send>>,
}

impl std::fmt::Debug for SinkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkCache")
            .field("used", &self.state.is_some())
            .finish()
    }
}

impl SinkCache {
    /// Runs `f` on this run's state of type `T`, created with `T::default()` on first use (or
    /// if a sink of another type used the cache before).
    pub fn with<T, R>(&mut self, f: impl FnOnce(&mut T) -> R) -> R
    where
        T: Default + Send + 'static,
    {
        let mut state: Box<T> = self
            .state
            .take()
            .and_then(|s| s.downcast::<T>().ok())
            .unwrap_or_default();
        let out = f(&mut state);
        self.state = Some(state);
        out
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use serde_json::json;
    use serde_json::value::RawValue;

    use super::{ChangeSink, SinkCache};
    use crate::fanout::Delivery;
    use crate::router::{Claims, Subscriber};
    use crate::tenant::{TenantCdc, TenantConfig};
    use crate::CdcEvent;

    /// Records what it receives; refuses everything once `gone`.
    #[derive(Debug, Default)]
    struct Recorder {
        seen: Mutex<Vec<String>>,
        gone: AtomicBool,
        stopped: AtomicBool,
    }

    impl ChangeSink for Recorder {
        fn push(&self, event: CdcEvent, cache: &mut SinkCache) -> bool {
            if self.gone.load(Ordering::SeqCst) {
                return false;
            }
            // Which push of the run this is, counted in the run's cache.
            let n = cache.with(|n: &mut usize| {
                *n += 1;
                *n
            });
            let text = match event {
                CdcEvent::System(v) => {
                    format!("system {} #{n}", v["message"].as_str().unwrap_or(""))
                }
                CdcEvent::Change { data, .. } => format!("change {} #{n}", data.get()),
            };
            self.seen.lock().unwrap().push(text);
            true
        }

        fn pipeline_stopped(&self) {
            self.stopped.store(true, Ordering::SeqCst);
        }
    }

    fn tenant() -> Arc<TenantCdc> {
        let config = TenantConfig {
            external_id: "t".into(),
            conn: realtime_pg::connect::ConnectOptions::new("localhost", 5432, "db", "u", "p"),
            publication: "supabase_realtime".into(),
            slot: "slot".into(),
            max_record_bytes: 1024,
            slot_lease: crate::slot_lease::DEFAULT_LEASE,
        };
        TenantCdc::new(config, Duration::from_secs(60), Arc::default())
    }

    fn subscriber(key: u64, sink: Arc<Recorder>) -> Arc<Subscriber> {
        let claims = Claims::new(&json!({"role": "anon"})).unwrap();
        Arc::new(Subscriber {
            key,
            topic: format!("realtime:c{key}"),
            claims: std::sync::RwLock::new(Arc::new(claims)),
            bindings: Vec::new(),
            sink,
        })
    }

    fn system(sub: &Arc<Subscriber>, message: &str) -> Delivery {
        Delivery {
            subscriber: sub.clone(),
            event: CdcEvent::System(crate::system_message(&sub.topic, "ok", message)),
        }
    }

    fn change(sub: &Arc<Subscriber>, data: &Arc<RawValue>) -> Delivery {
        Delivery {
            subscriber: sub.clone(),
            event: CdcEvent::Change {
                ids: vec![1],
                data: data.clone(),
            },
        }
    }

    #[tokio::test]
    async fn deliveries_keep_their_order_and_gone_channels_are_unsubscribed() {
        let t = tenant();
        let (ra, rb) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
        let (a, b) = (subscriber(1, ra.clone()), subscriber(2, rb.clone()));
        t.router.insert(a.clone());
        t.router.insert(b.clone());
        rb.gone.store(true, Ordering::SeqCst);
        let one: Arc<RawValue> = RawValue::from_string("1".into()).unwrap().into();
        let two: Arc<RawValue> = RawValue::from_string("2".into()).unwrap().into();
        t.deliver(vec![
            system(&a, "first"),
            change(&a, &one),
            change(&b, &one),
            system(&a, "error"),
            change(&a, &two),
        ]);
        assert_eq!(
            *ra.seen.lock().unwrap(),
            [
                "system first #1",
                "change 1 #2",
                "system error #3",
                "change 2 #4"
            ]
        );
        // The refused push unsubscribed only that channel.
        let left: Vec<u64> = t.router.all().iter().map(|s| s.key).collect();
        assert_eq!(left, [1]);

        // A stopped pipeline tells the channels still registered.
        t.router.clear();
        assert!(ra.stopped.load(Ordering::SeqCst));
        assert!(!rb.stopped.load(Ordering::SeqCst));
        assert!(t.router.is_empty());
    }

    #[test]
    fn state_persists_across_pushes_and_is_per_type() {
        let mut cache = SinkCache::default();
        cache.with(|n: &mut u32| *n += 1);
        assert_eq!(cache.with(|n: &mut u32| *n), 1);
        // Another type starts fresh (and replaces the first one's state).
        assert_eq!(cache.with(|s: &mut String| s.len()), 0);
        assert_eq!(cache.with(|n: &mut u32| *n), 0);
    }
}
