//! Per-tenant rate counters (joins, events, presence, REST requests) and the limit checks of
//! PROTOCOL.md §12. Limit values are passed in from the cached tenant at each decision.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use crate::gateway::rate::RateCounter;
use crate::metrics::{Metrics, TenantMetrics};

/// Upstream averages over at most 12 buckets.
const BUCKETS: usize = 12;

/// The counters of one tenant.
#[derive(Debug)]
pub struct TenantRates {
    /// Joins (§5.3 step 7).
    pub joins: RateCounter,
    /// Tenant events (§12 `max_events_per_second`).
    pub events: RateCounter,
    /// Presence events.
    pub presence: RateCounter,
    /// REST requests, per-second samples over 60 s (`x-rate-rolling`).
    pub requests: RateCounter,
    /// The tenant's metrics series (the counters above add to them).
    pub metrics: Arc<TenantMetrics>,
}

/// Counters of every tenant seen by this process.
#[derive(Debug)]
pub struct Limits {
    tick: Duration,
    tenants: DashMap<String, Arc<TenantRates>>,
    metrics: Arc<Metrics>,
}

impl Limits {
    /// Counters whose buckets are `tick` long, summed into `metrics`.
    pub fn new(tick: Duration, metrics: Arc<Metrics>) -> Limits {
        Limits {
            tick,
            tenants: DashMap::new(),
            metrics,
        }
    }

    /// Every tenant's counters.
    pub fn all(&self) -> Vec<(String, Arc<TenantRates>)> {
        self.tenants
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// The counters of `tenant`, created on first use.
    pub fn rates(&self, tenant: &str) -> Arc<TenantRates> {
        if let Some(r) = self.tenants.get(tenant) {
            return r.clone();
        }
        let tick = self.tick;
        // REST rolling average: one-second samples over a minute, scaled with the tick so
        // tests that shorten the tick shorten this window too.
        let rest_tick = tick / 5;
        self.tenants
            .entry(tenant.to_string())
            .or_insert_with(|| {
                let metrics = self.metrics.tenant(tenant);
                Arc::new(TenantRates {
                    joins: RateCounter::new(tick, BUCKETS).summed_into(metrics.joins.clone()),
                    events: RateCounter::new(tick, BUCKETS).summed_into(metrics.events.clone()),
                    presence: RateCounter::new(tick, BUCKETS)
                        .summed_into(metrics.presence_events.clone()),
                    requests: RateCounter::new(rest_tick, 60),
                    metrics,
                })
            })
            .clone()
    }
}
