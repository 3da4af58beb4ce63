//! The node's global series (upstream's `/metrics` first exposition): tenant counters summed
//! over tenants, channel errors by code, Phoenix joins, payload sizes, and the slow-consumer
//! closes of the gateway's bounded outbound queues.

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts};

use crate::metrics::PAYLOAD_BUCKETS;

/// Upstream's `endpoint` label of Phoenix series.
const ENDPOINT: &str = "RealtimeWeb.Endpoint";
/// The only transport served.
const TRANSPORT: &str = "websocket";

/// Counters and histograms without a tenant label.
pub struct GlobalMetrics {
    pub(crate) events: IntCounter,
    pub(crate) presence_events: IntCounter,
    pub(crate) db_events: IntCounter,
    pub(crate) joins: IntCounter,
    pub(crate) input_bytes: IntCounter,
    pub(crate) output_bytes: IntCounter,
    pub(crate) slow_consumer_closes: IntCounter,
    errors: IntCounterVec,
    joined: IntCounterVec,
    payload_size: HistogramVec,
}

fn made<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(t) => t,
        Err(e) => panic!("metric definition: {e}"),
    }
}

fn counter(name: &str, help: &str) -> IntCounter {
    made(IntCounter::new(name, help))
}

impl GlobalMetrics {
    /// Every global counter at zero.
    pub fn new() -> GlobalMetrics {
        GlobalMetrics {
            events: counter(
                "realtime_channel_global_events",
                "Global sum of messages sent on a Realtime Channel.",
            ),
            presence_events: counter(
                "realtime_channel_global_presence_events",
                "Global sum of presence messages sent on a Realtime Channel.",
            ),
            db_events: counter(
                "realtime_channel_global_db_events",
                "Global sum of db messages sent on a Realtime Channel.",
            ),
            joins: counter(
                "realtime_channel_global_joins",
                "Global sum of Realtime Channel joins.",
            ),
            input_bytes: counter(
                "realtime_channel_global_input_bytes",
                "Global sum of input bytes sent on sockets.",
            ),
            output_bytes: counter(
                "realtime_channel_global_output_bytes",
                "Global sum of output bytes sent on sockets.",
            ),
            slow_consumer_closes: counter(
                "realtime_gateway_slow_consumer_closes",
                "Sockets disconnected because their bounded outbound queue was full (frames or bytes).",
            ),
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
            payload_size: made(HistogramVec::new(
                HistogramOpts::new(
                    "realtime_payload_size",
                    "Global payload size across all tenants",
                )
                .buckets(PAYLOAD_BUCKETS.to_vec()),
                &["message_type"],
            )),
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

    pub(crate) fn payload(&self, message_type: &str, size: usize) {
        self.payload_size
            .with_label_values(&[message_type])
            .observe(size as f64);
    }

    /// The global families.
    pub fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        for c in [
            &self.events,
            &self.presence_events,
            &self.db_events,
            &self.joins,
            &self.input_bytes,
            &self.output_bytes,
            &self.slow_consumer_closes,
        ] {
            out.extend(c.collect());
        }
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
