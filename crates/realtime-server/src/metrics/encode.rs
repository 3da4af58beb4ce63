//! Families → Prometheus text: families of the same name merged, the node labels added,
//! labels sorted by name, samples sorted by label values, and the exposition closed with
//! upstream's `# EOF` line. The text itself is written by the `prometheus` crate's encoder.

use std::collections::BTreeMap;

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

use crate::metrics::node::NodeLabels;
use realtime_cdc::stats::Buckets;

/// Appends one exposition of `families` to `out`, followed by `# EOF`.
pub fn exposition(families: Vec<MetricFamily>, node: &NodeLabels, out: &mut Vec<u8>) {
    let mut by_name: BTreeMap<String, MetricFamily> = BTreeMap::new();
    for mut mf in families {
        if mf.get_metric().is_empty() {
            continue;
        }
        match by_name.get_mut(mf.name()) {
            Some(existing) => {
                let more = mf.take_metric();
                existing.mut_metric().extend(more);
            }
            None => {
                by_name.insert(mf.name().to_string(), mf);
            }
        }
    }
    let merged: Vec<MetricFamily> = by_name
        .into_values()
        .map(|mut mf| {
            for m in mf.mut_metric().iter_mut() {
                let mut labels = m.take_label();
                for (k, v) in node.pairs() {
                    labels.push(label(k, v));
                }
                labels.sort_by(|a, b| a.name().cmp(b.name()));
                m.set_label(labels);
            }
            mf.mut_metric().sort_by(|a, b| {
                let va = a.get_label().iter().map(|l| l.value());
                let vb = b.get_label().iter().map(|l| l.value());
                va.cmp(vb)
            });
            mf
        })
        .collect();
    if let Err(e) = TextEncoder::new().encode(&merged, out) {
        tracing::error!(error = %e, "metrics could not be encoded");
    }
    out.extend_from_slice(b"# EOF\n");
}

/// A label pair.
pub fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(name.to_string());
    mf.set_help(help.to_string());
    mf.set_field_type(kind);
    mf.set_metric(metrics);
    mf
}

/// A counter family with a single unlabelled sample.
pub fn counter(name: &str, help: &str, value: f64) -> MetricFamily {
    let mut c = Counter::default();
    c.set_value(value);
    let mut m = Metric::default();
    m.set_counter(c);
    family(name, help, MetricType::COUNTER, vec![m])
}

/// A gauge family with one sample per label set.
pub fn gauges(name: &str, help: &str, samples: Vec<(Vec<LabelPair>, f64)>) -> MetricFamily {
    let metrics = samples
        .into_iter()
        .map(|(labels, v)| {
            let mut g = Gauge::default();
            g.set_value(v);
            let mut m = Metric::from_label(labels);
            m.set_gauge(g);
            m
        })
        .collect();
    family(name, help, MetricType::GAUGE, metrics)
}

/// A gauge family with a single unlabelled sample.
pub fn gauge(name: &str, help: &str, value: f64) -> MetricFamily {
    gauges(name, help, vec![(Vec::new(), value)])
}

/// A histogram family from bucket counts kept elsewhere (one sample per label set).
pub fn histograms(name: &str, help: &str, samples: Vec<(Vec<LabelPair>, Buckets)>) -> MetricFamily {
    let metrics = samples
        .into_iter()
        .map(|(labels, b)| {
            let mut cumulative = 0;
            let buckets = b
                .bounds
                .iter()
                .zip(&b.counts)
                .map(|(bound, n)| {
                    cumulative += n;
                    let mut bucket = Bucket::default();
                    bucket.set_upper_bound(*bound);
                    bucket.set_cumulative_count(cumulative);
                    bucket
                })
                .collect();
            let mut h = Histogram::default();
            h.set_bucket(buckets);
            h.set_sample_count(b.count);
            h.set_sample_sum(b.sum);
            let mut m = Metric::from_label(labels);
            m.set_histogram(h);
            m
        })
        .collect();
    family(name, help, MetricType::HISTOGRAM, metrics)
}
