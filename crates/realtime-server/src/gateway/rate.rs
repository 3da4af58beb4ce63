//! Upstream's rate counter: events counted into fixed buckets; the average rate is the sum of
//! the last buckets over their span. Rolled lazily on use, so it needs no background task.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A rolling-average event counter.
#[derive(Debug)]
pub struct RateCounter {
    tick: Duration,
    max_buckets: usize,
    inner: Mutex<Inner>,
    /// The metrics series that sum what is counted here, when there is one.
    total: Option<crate::metrics::Count>,
    /// The other nodes' average (cluster mode), as `f64` bits; added to this node's.
    elsewhere: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    bucket_start: Instant,
    current: u64,
    buckets: VecDeque<u64>,
    avg: f64,
}

impl RateCounter {
    /// A counter with `tick`-long buckets, averaging over at most `max_buckets` of them.
    pub fn new(tick: Duration, max_buckets: usize) -> RateCounter {
        RateCounter {
            tick: tick.max(Duration::from_millis(1)),
            max_buckets: max_buckets.max(1),
            inner: Mutex::new(Inner {
                bucket_start: Instant::now(),
                current: 0,
                buckets: VecDeque::new(),
                avg: 0.0,
            }),
            total: None,
            elsewhere: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Also adds every count to `total` (upstream's `realtime_channel_*` sums are the sums of
    /// these rate counters).
    pub fn summed_into(mut self, total: crate::metrics::Count) -> RateCounter {
        self.total = Some(total);
        self
    }

    fn roll(&self, inner: &mut Inner, now: Instant) {
        let mut rolled = 0;
        while now.duration_since(inner.bucket_start) >= self.tick {
            inner.buckets.push_back(inner.current);
            inner.current = 0;
            while inner.buckets.len() > self.max_buckets {
                inner.buckets.pop_front();
            }
            inner.bucket_start += self.tick;
            rolled += 1;
            if rolled > self.max_buckets {
                // Long idle: every bucket is empty now; jump to the present.
                inner.bucket_start = now;
            }
        }
        if rolled > 0 && !inner.buckets.is_empty() {
            let sum: u64 = inner.buckets.iter().sum();
            inner.avg = sum as f64 / (inner.buckets.len() as f64 * self.tick.as_secs_f64());
        }
    }

    /// Counts `n` events.
    pub fn add(&self, n: u64) {
        if let Some(total) = &self.total {
            total.add(n);
        }
        if let Ok(mut inner) = self.inner.lock() {
            let now = Instant::now();
            self.roll(&mut inner, now);
            inner.current += n;
        }
    }

    /// The last computed average, in events per second, of this node and (cluster mode) the
    /// others.
    pub fn average(&self) -> f64 {
        self.local_average() + f64::from_bits(self.elsewhere.load(Ordering::Relaxed))
    }

    /// This node's average alone.
    pub fn local_average(&self) -> f64 {
        match self.inner.lock() {
            Ok(mut inner) => {
                self.roll(&mut inner, Instant::now());
                inner.avg
            }
            Err(_) => 0.0,
        }
    }

    /// Sets the other nodes' average (cluster mode).
    pub fn set_elsewhere(&self, avg: f64) {
        self.elsewhere
            .store(avg.max(0.0).to_bits(), Ordering::Relaxed);
    }

    /// Upstream's "triggered": the average has reached the limit.
    pub fn triggered(&self, limit: u64) -> bool {
        self.average() >= limit as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_over_buckets() {
        let c = RateCounter::new(Duration::from_millis(20), 12);
        c.add(10);
        assert_eq!(c.average(), 0.0);
        std::thread::sleep(Duration::from_millis(25));
        // One bucket of 10 events over 20 ms = 500/s.
        let avg = c.average();
        assert!((avg - 500.0).abs() < 1.0, "{avg}");
        assert!(c.triggered(500));
        assert!(!c.triggered(501));
        // Other nodes' traffic counts toward the limit.
        c.set_elsewhere(100.0);
        assert!(c.triggered(600));
        assert!((c.local_average() - 500.0).abs() < 1.0);
    }
}
