//! Tenant limits counted across nodes: every [`SHARE_EVERY`] each node writes its own figures
//! per tenant (join, event and presence rates, connected users) to Redis and reads the
//! others'; each limit then weighs this node's live figure plus the others' last shared ones.
//!
//! The error is bounded by one sharing period: what the other nodes did since their last
//! share (at most [`SHARE_EVERY`] plus a Redis round trip) is not yet counted here. Rates are
//! averages over upstream's 12 buckets, so a period's lag moves them little; connected users
//! can overshoot the limit by what the other nodes admitted within one period. While Redis
//! is away each node counts only itself, and the others' figures are dropped after
//! [`STALE_AFTER`] without news.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::Cluster;
use crate::gateway::Gateway;

/// How often figures are shared.
pub const SHARE_EVERY: Duration = Duration::from_secs(1);

/// Figures not refreshed for this long are forgotten (Redis away).
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// The other nodes' figures for one tenant, summed.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Elsewhere {
    /// Joins per second.
    pub joins: f64,
    /// Events per second.
    pub events: f64,
    /// Presence events per second.
    pub presence: f64,
    /// Connected users.
    pub users: u64,
}

/// What the other nodes reported, per tenant, and when.
#[derive(Default)]
pub struct SharedLoad {
    tenants: DashMap<String, Elsewhere>,
    at: std::sync::Mutex<Option<Instant>>,
}

impl SharedLoad {
    /// Connected users of `tenant` on the other nodes.
    pub fn users(&self, tenant: &str) -> u64 {
        if self.stale() {
            return 0;
        }
        self.tenants.get(tenant).map(|e| e.users).unwrap_or(0)
    }

    fn stale(&self) -> bool {
        match self.at.lock() {
            Ok(at) => at.is_none_or(|t| t.elapsed() > STALE_AFTER),
            Err(_) => true,
        }
    }
}

/// One row field: `joins events presence users`.
fn encode(joins: f64, events: f64, presence: f64, users: u64) -> String {
    format!("{joins:.3} {events:.3} {presence:.3} {users}")
}

fn decode(text: &str) -> Option<Elsewhere> {
    let mut parts = text.split(' ');
    let mut f = || parts.next()?.parse::<f64>().ok().filter(|v| v.is_finite());
    let joins = f()?;
    let events = f()?;
    let presence = f()?;
    let users = f()?;
    Some(Elsewhere {
        joins,
        events,
        presence,
        users: users.max(0.0) as u64,
    })
}

/// Sums the other nodes' rows per tenant (malformed fields are skipped).
pub fn sum(rows: &[HashMap<String, String>]) -> HashMap<String, Elsewhere> {
    let mut out: HashMap<String, Elsewhere> = HashMap::new();
    for row in rows {
        for (tenant, text) in row {
            let Some(e) = decode(text) else { continue };
            let acc = out.entry(tenant.clone()).or_default();
            acc.joins += e.joins;
            acc.events += e.events;
            acc.presence += e.presence;
            acc.users += e.users;
        }
    }
    out
}

/// Shares this node's figures and takes in the others', every [`SHARE_EVERY`].
pub(crate) async fn share(cluster: Weak<Cluster>, gw: Weak<Gateway>) {
    let mut tick = tokio::time::interval(SHARE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (Some(cluster), Some(gw)) = (cluster.upgrade(), gw.upgrade()) else {
            return;
        };
        let rates = gw.limits.all();
        let own: Vec<(String, String)> = rates
            .iter()
            .map(|(tenant, r)| {
                let row = encode(
                    r.joins.local_average(),
                    r.events.local_average(),
                    r.presence.local_average(),
                    gw.connected_count(tenant) as u64,
                );
                (tenant.clone(), row)
            })
            .collect();
        let shared = &cluster.load;
        let Some(rows) = cluster.link.exchange("load", &own).await else {
            if shared.stale() {
                for (_, r) in &rates {
                    r.joins.set_elsewhere(0.0);
                    r.events.set_elsewhere(0.0);
                    r.presence.set_elsewhere(0.0);
                }
            }
            continue;
        };
        let sums = sum(&rows);
        shared.tenants.retain(|t, _| sums.contains_key(t));
        for (t, e) in &sums {
            shared.tenants.insert(t.clone(), *e);
        }
        if let Ok(mut at) = shared.at.lock() {
            *at = Some(Instant::now());
        }
        for (tenant, r) in &rates {
            let e = sums.get(tenant).copied().unwrap_or_default();
            r.joins.set_elsewhere(e.joins);
            r.events.set_elsewhere(e.events);
            r.presence.set_elsewhere(e.presence);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_per_tenant_and_garbage_is_skipped() {
        let rows = vec![
            HashMap::from([
                ("a".to_string(), encode(1.0, 2.0, 3.0, 4)),
                ("b".to_string(), "not numbers".to_string()),
            ]),
            HashMap::from([
                ("a".to_string(), encode(0.5, 0.5, 0.5, 1)),
                ("b".to_string(), "NaN 1 1 1".to_string()),
            ]),
        ];
        let s = sum(&rows);
        assert_eq!(
            s["a"],
            Elsewhere {
                joins: 1.5,
                events: 2.5,
                presence: 3.5,
                users: 5
            }
        );
        assert!(!s.contains_key("b"));
    }
}
