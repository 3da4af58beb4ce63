//! Payload size histograms by `message_type`, one resolved histogram per type so observing is
//! a few atomic adds without a label lookup; a type never seen is not exported.

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts};

use crate::metrics::PAYLOAD_BUCKETS;

/// What a payload was sent as (upstream's `message_type` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// A broadcast.
    Broadcast,
    /// A presence message.
    Presence,
    /// A Postgres Changes event.
    PostgresChanges,
}

impl MessageType {
    const ALL: [MessageType; 3] = [
        MessageType::Broadcast,
        MessageType::Presence,
        MessageType::PostgresChanges,
    ];

    fn as_str(self) -> &'static str {
        match self {
            MessageType::Broadcast => "broadcast",
            MessageType::Presence => "presence",
            MessageType::PostgresChanges => "postgres_changes",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One histogram per message type.
pub struct PayloadSizes {
    by_type: Vec<Histogram>,
}

impl PayloadSizes {
    /// Histograms named `name`, labelled with `tenant` when given.
    pub fn new(name: &str, help: &str, tenant: Option<&str>) -> PayloadSizes {
        let by_type = MessageType::ALL
            .iter()
            .map(|t| {
                let mut opts = HistogramOpts::new(name, help)
                    .const_label("message_type", t.as_str())
                    .buckets(PAYLOAD_BUCKETS.to_vec());
                if let Some(tenant) = tenant {
                    opts = opts.const_label("tenant", tenant);
                }
                match Histogram::with_opts(opts) {
                    Ok(h) => h,
                    Err(e) => panic!("metric definition: {e}"),
                }
            })
            .collect();
        PayloadSizes { by_type }
    }

    /// A payload of `size` bytes sent as `kind`.
    #[inline]
    pub fn observe(&self, kind: MessageType, size: usize) {
        if let Some(h) = self.by_type.get(kind.index()) {
            h.observe(size as f64);
        }
    }

    /// The families of the types seen.
    pub fn collect(&self) -> Vec<MetricFamily> {
        self.by_type
            .iter()
            .filter(|h| h.get_sample_count() > 0)
            .flat_map(|h| h.collect())
            .collect()
    }
}
