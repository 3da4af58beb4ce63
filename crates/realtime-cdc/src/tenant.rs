//! One tenant's Postgres Changes state: its connection settings, its channels, the pipeline's
//! readiness, and the idle-stop handshake with subscribers arriving concurrently.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use realtime_pg::connect::ConnectOptions;
use tokio::sync::watch;

use crate::db::TenantDb;
use crate::fanout::Delivery;
use crate::router::Router;
use crate::CdcEvent;

/// Connection and slot settings of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// Tenant external id (for logs and the registry of pipelines).
    pub external_id: String,
    /// Tenant database connection.
    pub conn: ConnectOptions,
    /// Publication to stream.
    pub publication: String,
    /// Slot name (with suffix).
    pub slot: String,
    /// `poll_max_record_bytes`: beyond it a change is sent with `Error 413`.
    pub max_record_bytes: usize,
    /// How long another holder of the slot may stay silent before it counts as gone
    /// ([`crate::slot_lease`]).
    pub slot_lease: Duration,
}

/// Where the pipeline is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineState {
    /// Connecting and preparing the slot.
    Starting,
    /// Streaming (or reconnecting after a transient failure; the slot keeps the position).
    Ready,
    /// Waiting for the slot, which another live session streams from (another server
    /// instance on the same database). Channels subscribe as when ready; they receive changes
    /// once this pipeline takes the slot over, from the slot's confirmed position on.
    Standby,
    /// Stopped for good with this reason.
    Failed(String),
    /// Stopped after the idle period.
    Stopped,
}

/// The registry of live tenants, shared with pipelines so an idle one can remove itself.
pub type Tenants = Arc<Mutex<HashMap<String, Arc<TenantCdc>>>>;

/// A tenant's Postgres Changes.
pub struct TenantCdc {
    /// Settings.
    pub config: TenantConfig,
    /// Channels.
    pub router: Router,
    /// Slot and RLS gate figures, read for monitoring.
    pub stats: Arc<crate::stats::PipelineStats>,
    state: watch::Sender<PipelineState>,
    /// Connection used by subscription checks, opened on demand.
    pub control: tokio::sync::Mutex<Option<TenantDb>>,
    next_key: AtomicU64,
    /// Subscriptions being set up (the pipeline must not stop under them).
    pub pending: AtomicUsize,
    idle: Duration,
    empty_since: Mutex<Option<Instant>>,
    registry: Tenants,
    shutdown: watch::Sender<bool>,
    /// A stopping pipeline of the same tenant that must finish (and drop the slot) first.
    predecessor: Mutex<Option<Arc<TenantCdc>>>,
    /// Where the changes are shared with other nodes (cluster mode).
    pub relay: std::sync::OnceLock<crate::relay::RelayHandle>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl TenantCdc {
    /// A tenant in `Starting` state; the caller spawns [`crate::pipeline::run`].
    pub fn new(config: TenantConfig, idle: Duration, registry: Tenants) -> Arc<TenantCdc> {
        Arc::new(TenantCdc {
            config,
            router: Router::default(),
            stats: Arc::default(),
            state: watch::channel(PipelineState::Starting).0,
            control: tokio::sync::Mutex::new(None),
            next_key: AtomicU64::new(1),
            pending: AtomicUsize::new(0),
            idle,
            empty_since: Mutex::new(None),
            registry,
            shutdown: watch::channel(false).0,
            predecessor: Mutex::new(None),
            relay: std::sync::OnceLock::new(),
        })
    }

    /// Makes this pipeline wait for `previous` (being stopped) before touching the slot.
    pub fn follow(&self, previous: Arc<TenantCdc>) {
        *lock(&self.predecessor) = Some(previous);
    }

    /// Waits (at most `timeout`) for the pipeline this one replaces to finish.
    pub async fn wait_predecessor(&self, timeout: Duration) {
        let previous = lock(&self.predecessor).take();
        if let Some(previous) = previous {
            previous.wait_finished(timeout).await;
        }
    }

    /// Removes this tenant from the registry if it is still the registered one.
    pub fn leave_registry(self: &Arc<Self>) {
        let mut reg = lock(&self.registry);
        if reg
            .get(&self.config.external_id)
            .is_some_and(|t| Arc::ptr_eq(t, self))
        {
            reg.remove(&self.config.external_id);
        }
    }

    /// A fresh subscriber key.
    pub fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Current state.
    pub fn state(&self) -> PipelineState {
        self.state.borrow().clone()
    }

    /// Sets the state.
    pub fn set_state(&self, s: PipelineState) {
        self.state.send_replace(s);
    }

    /// Whether the pipeline has ended (a new one must be started for new subscribers).
    pub fn is_finished(&self) -> bool {
        matches!(
            *self.state.borrow(),
            PipelineState::Failed(_) | PipelineState::Stopped
        )
    }

    /// Waits until the pipeline streams (or waits as a standby), fails, or `timeout` passes.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let mut rx = self.state.subscribe();
        let outcome = tokio::time::timeout(timeout, async {
            rx.wait_for(|s| !matches!(s, PipelineState::Starting))
                .await
                .map(|s| s.clone())
        })
        .await;
        match outcome {
            Ok(Ok(PipelineState::Ready | PipelineState::Standby)) => Ok(()),
            Ok(Ok(PipelineState::Failed(m))) => Err(m),
            Ok(_) => Err("the Postgres Changes pipeline stopped".to_string()),
            Err(_) => Err(crate::subscribe::TIMEOUTS.to_string()),
        }
    }

    /// Asks the pipeline to stop now and drop its slot (process shutdown).
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Whether a shutdown was requested.
    pub fn shutdown_requested(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves once a shutdown is requested.
    pub async fn shutdown_signal(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Waits until the pipeline has ended, at most `timeout`.
    pub async fn wait_finished(&self, timeout: Duration) {
        let mut rx = self.state.subscribe();
        let _ = tokio::time::timeout(timeout, async {
            let _ = rx
                .wait_for(|s| matches!(s, PipelineState::Failed(_) | PipelineState::Stopped))
                .await;
        })
        .await;
    }

    /// Whether the idle period has passed with no channel and no subscription in progress.
    pub fn idle_stop_due(&self) -> bool {
        let empty = self.router.is_empty() && self.pending.load(Ordering::SeqCst) == 0;
        let mut since = lock(&self.empty_since);
        if !empty {
            *since = None;
            return false;
        }
        since.get_or_insert_with(Instant::now).elapsed() >= self.idle
    }

    /// Called by the pipeline every second: when the idle period is over, removes this
    /// tenant from the registry (so new subscriptions start a new pipeline) and returns true.
    pub fn try_begin_idle_stop(self: &Arc<Self>) -> bool {
        if self.shutdown_requested() {
            return true;
        }
        if !self.idle_stop_due() {
            return false;
        }
        let mut reg = lock(&self.registry);
        // Re-check under the registry lock: subscribers register `pending` under it.
        if !self.router.is_empty() || self.pending.load(Ordering::SeqCst) != 0 {
            return false;
        }
        if reg
            .get(&self.config.external_id)
            .is_some_and(|t| Arc::ptr_eq(t, self))
        {
            reg.remove(&self.config.external_id);
        }
        true
    }

    /// Stops for good: tells every channel, leaves the registry.
    pub fn fail(self: &Arc<Self>, message: String) {
        {
            let mut reg = lock(&self.registry);
            if reg
                .get(&self.config.external_id)
                .is_some_and(|t| Arc::ptr_eq(t, self))
            {
                reg.remove(&self.config.external_id);
            }
        }
        self.set_state(PipelineState::Failed(message.clone()));
        self.broadcast_system("error", &message);
        // Each channel learns its pipeline is gone and subscribes again later, which starts a
        // new pipeline once the cause is fixed.
        self.router.clear();
    }

    /// Hands events to the sinks, in order and without waiting (a channel that can't keep up
    /// is its socket's problem, never the tenant's); a channel that is gone is unsubscribed.
    /// One [`crate::SinkCache`] spans the run, so a change delivered to many channels is
    /// encoded once.
    pub fn deliver(&self, deliveries: Vec<Delivery>) {
        let mut cache = crate::SinkCache::default();
        for d in deliveries {
            if !d.subscriber.sink.push(d.event, &mut cache) {
                self.router.remove(d.subscriber.key);
            }
        }
    }

    /// Sends a system message to every channel (when the pipeline stops for good).
    pub fn broadcast_system(&self, status: &str, message: &str) {
        let deliveries = self
            .router
            .all()
            .into_iter()
            .map(|s| Delivery {
                event: CdcEvent::System(crate::error::system_message(&s.topic, status, message)),
                subscriber: s,
            })
            .collect();
        self.deliver(deliveries);
    }
}
