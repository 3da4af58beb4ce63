//! A fixed-size latency histogram that many tasks add to at once, for runs too long to keep
//! every sample (a 10-minute soak delivers millions of messages).

use std::sync::atomic::{AtomicU64, Ordering};

/// Values below this many microseconds get a bucket each.
const LINEAR: u64 = 1024;
/// Buckets per power of two above [`LINEAR`]: a relative error under 0.2 %.
const SUB: u64 = 512;
/// Powers of two covered above [`LINEAR`] (up to about 2^40 µs, 12 days).
const OCTAVES: u64 = 30;

/// Microsecond latencies counted into log-linear buckets with atomic counters.
pub struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        let n = (LINEAR + SUB * OCTAVES) as usize;
        Histogram {
            buckets: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn index(micros: u64) -> usize {
        if micros < LINEAR {
            return micros as usize;
        }
        // `micros` lies in [2^k, 2^(k+1)) with k ≥ 10; keep its top 10 bits.
        let k = 63 - u64::from(micros.leading_zeros());
        let octave = (k - 10).min(OCTAVES - 1);
        let shift = octave + 1;
        let sub = ((micros >> shift) - SUB).min(SUB - 1);
        (LINEAR + octave * SUB + sub) as usize
    }

    /// The smallest value of bucket `i`.
    fn lower_bound(i: usize) -> u64 {
        let i = i as u64;
        if i < LINEAR {
            return i;
        }
        let octave = (i - LINEAR) / SUB;
        let sub = (i - LINEAR) % SUB;
        (SUB + sub) << (octave + 1)
    }

    /// Counts one value in microseconds.
    pub fn record(&self, micros: u64) {
        self.buckets[Histogram::index(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// Values counted so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `p`-th percentile (nearest rank) in milliseconds, as the lower bound of its bucket;
    /// NaN when empty.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return f64::NAN;
        }
        let rank = (((p / 100.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Histogram::lower_bound(i) as f64 / 1000.0;
            }
        }
        f64::NAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_within_their_precision() {
        for v in [
            0u64, 1, 1023, 1024, 1025, 2047, 2048, 5_000, 123_456, 9_999_999,
        ] {
            let lo = Histogram::lower_bound(Histogram::index(v));
            assert!(lo <= v, "{v}: lower bound {lo}");
            assert!(v - lo <= v / 256, "{v}: lower bound {lo} too far");
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let h = Histogram::new();
        assert!(h.percentile_ms(50.0).is_nan());
        for ms in 1..=100u64 {
            h.record(ms * 1000);
        }
        assert_eq!(h.count(), 100);
        assert!((h.percentile_ms(50.0) - 50.0).abs() < 0.2);
        assert!((h.percentile_ms(99.0) - 99.0).abs() < 0.4);
    }
}
