//! The node's global series (upstream's `/metrics` first exposition): tenant counters summed
//! over tenants at scrape time, channel errors by code, Phoenix joins, payload sizes, and the slow-consumer
//! closes of the gateway's bounded outbound queues.

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use std::sync::Arc;

use prometheus::{IntCounterVec, Opts};

use crate::metrics::encode::counter;
use crate::metrics::payload::{MessageType, PayloadSizes};
use crate::metrics::tenant::{TenantMetrics, GLOBAL_SUMS};

/// Upstream's `endpoint` label of Phoenix series.
const ENDPOINT: &str = "RealtimeWeb.Endpoint";
/// The only transport served.
const TRANSPORT: &str = "websocket";

/// Counters and histograms without a tenant label.
pub struct GlobalMetrics {
    errors: IntCounterVec,
    joined: IntCounterVec,
    payload_size: PayloadSizes,
}

fn made<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(t) => t,
        Err(e) => panic!("metric definition: {e}"),
    }
}

impl GlobalMetrics {
    /// Every global counter at zero.
    pub fn new() -> GlobalMetrics {
        GlobalMetrics {
            errors: made(IntCounterVec::new(
                Opts::new(
                    "realtime_channel_global_error",
                    "Global count of errors in Realtime channel initialization.",
                ),
                &["code"],
            )),
            joined: made(IntCounterVec::new(
                Opts::new(
                    "phoenix_channel_joined_total",
                    "The number of channel joins that have occurred.",
                ),
                &["result", "transport", "endpoint"],
            )),
            payload_size: PayloadSizes::new(
                "realtime_payload_size",
                "Global payload size across all tenants",
                None,
            ),
        }
    }

    pub(crate) fn channel_error(&self, code: &str) {
        self.errors.with_label_values(&[code]).inc();
    }

    pub(crate) fn joined(&self, result: &str) {
        self.joined
            .with_label_values(&[result, TRANSPORT, ENDPOINT])
            .inc();
    }

    pub(crate) fn payload(&self, kind: MessageType, size: usize) {
        self.payload_size.observe(kind, size);
    }

    /// The global families; the summed counters add up `tenants` (every tenant seen, idle
    /// ones included, so the sums never go back).
    pub fn collect(&self, tenants: &[Arc<TenantMetrics>]) -> Vec<MetricFamily> {
        let mut sums = [0u64; GLOBAL_SUMS.len()];
        for t in tenants {
            for (sum, n) in sums.iter_mut().zip(t.totals()) {
                *sum = sum.wrapping_add(n);
            }
        }
        let mut out: Vec<MetricFamily> = GLOBAL_SUMS
            .iter()
            .zip(sums)
            .map(|((name, help), v)| counter(name, help, v as f64))
            .collect();
        out.extend(self.errors.collect());
        out.extend(self.joined.collect());
        out.extend(self.payload_size.collect());
        out
    }
}

impl Default for GlobalMetrics {
    fn default() -> GlobalMetrics {
        GlobalMetrics::new()
    }
}
