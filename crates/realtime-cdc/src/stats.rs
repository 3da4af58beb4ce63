//! Figures the WAL consumers keep for monitoring: each slot's received and confirmed
//! positions and commit times (replication lag), and the RLS gate's batch sizes and
//! durations. Plain atomics updated where the work happens and read by whoever exports them.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use realtime_pg::Lsn;

/// One replication slot's progress.
#[derive(Debug, Default)]
pub struct SlotStats {
    /// Furthest WAL position the server reported (XLogData or keepalive).
    received: AtomicU64,
    /// Position confirmed to the server (everything before it was handed on).
    confirmed: AtomicU64,
    /// Commit time (PostgreSQL wire microseconds) of the oldest received transaction not yet
    /// handed on; 0 when none is waiting.
    waiting_since: AtomicI64,
    /// Commit time of the newest transaction received.
    last_commit: AtomicI64,
    /// A replication session is streaming.
    streaming: AtomicBool,
    /// The walsender of this consumer's last session (0: none yet), to tell it from another
    /// node's when the slot is released.
    walsender: std::sync::atomic::AtomicI32,
}

/// A reading of [`SlotStats`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotSnapshot {
    /// Furthest WAL position the server reported.
    pub received: Lsn,
    /// Position confirmed to the server.
    pub confirmed: Lsn,
    /// Bytes of WAL the slot holds back: `received - confirmed` (0 before anything arrived).
    pub lag_bytes: u64,
    /// How long the oldest received transaction not yet handed on has been committed; zero
    /// when everything received was handed on.
    pub lag: Duration,
    /// A replication session is streaming.
    pub streaming: bool,
}

impl SlotStats {
    /// The stream's positions: WAL the server reported up to `received`, confirmed up to
    /// `confirmed`.
    pub fn progress(&self, received: Lsn, confirmed: Lsn) {
        self.received.fetch_max(received.0, Ordering::Relaxed);
        self.confirmed.fetch_max(confirmed.0, Ordering::Relaxed);
    }

    /// A transaction committed at `commit_time` (wire microseconds) was received.
    pub fn commit_received(&self, commit_time: i64) {
        self.last_commit.store(commit_time, Ordering::Relaxed);
        let _ = self.waiting_since.compare_exchange(
            0,
            commit_time,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Everything received so far was handed on.
    pub fn handed_on(&self) {
        self.waiting_since.store(0, Ordering::Relaxed);
    }

    /// The walsender process of the session that starts.
    pub fn set_walsender(&self, pid: Option<i32>) {
        self.walsender.store(pid.unwrap_or(0), Ordering::Relaxed);
    }

    /// The walsender of the last session, if known.
    pub fn walsender(&self) -> Option<i32> {
        Some(self.walsender.load(Ordering::Relaxed)).filter(|p| *p != 0)
    }

    /// A session started (`true`) or ended (`false`).
    pub fn set_streaming(&self, on: bool) {
        self.streaming.store(on, Ordering::Relaxed);
        if !on {
            // Re-sent after the reconnect; counted again when it arrives.
            self.waiting_since.store(0, Ordering::Relaxed);
        }
    }

    /// The figures as of now.
    pub fn snapshot_now(&self) -> SlotSnapshot {
        self.snapshot(realtime_pg::time::now_micros())
    }

    /// The figures as of `now` (wire microseconds, see [`realtime_pg::time::now_micros`]).
    pub fn snapshot(&self, now: i64) -> SlotSnapshot {
        let received = self.received.load(Ordering::Relaxed);
        let confirmed = self.confirmed.load(Ordering::Relaxed);
        let waiting = self.waiting_since.load(Ordering::Relaxed);
        let lag = if waiting == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(u64::try_from(now.saturating_sub(waiting)).unwrap_or(0))
        };
        SlotSnapshot {
            received: Lsn(received),
            confirmed: Lsn(confirmed),
            lag_bytes: if confirmed == 0 {
                0
            } else {
                received.saturating_sub(confirmed)
            },
            lag,
            streaming: self.streaming.load(Ordering::Relaxed),
        }
    }
}

/// A Postgres Changes pipeline's figures: its slot and its RLS gate.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// The pipeline's slot.
    pub slot: Arc<SlotStats>,
    /// The RLS gate's batches.
    pub gate: GateStats,
}

/// Upper bounds of [`GateStats`]' batch-size buckets (rows).
pub const GATE_ROW_BOUNDS: [u64; 8] = [1, 4, 16, 64, 128, 256, 512, 1024];
/// Upper bounds of [`GateStats`]' duration buckets (seconds).
pub const GATE_SECONDS_BOUNDS: [f64; 9] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5];

/// The RLS gate: how many changes each batch judged and how long judging and fanning out took.
#[derive(Debug, Default)]
pub struct GateStats {
    rows: [AtomicU64; GATE_ROW_BOUNDS.len()],
    rows_sum: AtomicU64,
    seconds: [AtomicU64; GATE_SECONDS_BOUNDS.len()],
    micros_sum: AtomicU64,
    batches: AtomicU64,
}

/// A reading of one histogram: per-bucket (non-cumulative) counts, the sum and the count.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    /// Upper bounds.
    pub bounds: Vec<f64>,
    /// Observations in each bucket (not cumulative); those above every bound are counted
    /// only in `count`.
    pub counts: Vec<u64>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl GateStats {
    /// A batch of `rows` changes was judged and fanned out in `took`.
    pub fn batch(&self, rows: usize, took: Duration) {
        let rows = rows as u64;
        if let Some(i) = GATE_ROW_BOUNDS.iter().position(|b| rows <= *b) {
            self.rows[i].fetch_add(1, Ordering::Relaxed);
        }
        self.rows_sum.fetch_add(rows, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(i) = GATE_SECONDS_BOUNDS.iter().position(|b| secs <= *b) {
            self.seconds[i].fetch_add(1, Ordering::Relaxed);
        }
        self.micros_sum.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Rows per batch.
    pub fn rows(&self) -> Buckets {
        Buckets {
            bounds: GATE_ROW_BOUNDS.iter().map(|b| *b as f64).collect(),
            counts: self
                .rows
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum: self.rows_sum.load(Ordering::Relaxed) as f64,
            count: self.batches.load(Ordering::Relaxed),
        }
    }

    /// Seconds per batch.
    pub fn seconds(&self) -> Buckets {
        Buckets {
            bounds: GATE_SECONDS_BOUNDS.to_vec(),
            counts: self
                .seconds
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum: self.micros_sum.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.batches.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_counts_from_the_oldest_waiting_commit() {
        let s = SlotStats::default();
        s.progress(Lsn(1000), Lsn(0));
        s.commit_received(5_000_000);
        s.commit_received(6_000_000);
        let snap = s.snapshot(8_000_000);
        assert_eq!(snap.lag, Duration::from_secs(3));
        assert_eq!(snap.lag_bytes, 0, "nothing confirmed yet");
        s.progress(Lsn(1000), Lsn(900));
        s.handed_on();
        let snap = s.snapshot(9_000_000);
        assert_eq!(snap.lag, Duration::ZERO);
        assert_eq!(snap.lag_bytes, 100);
    }

    #[test]
    fn gate_batches_fall_into_buckets() {
        let g = GateStats::default();
        g.batch(3, Duration::from_millis(2));
        g.batch(600, Duration::from_secs(5));
        let rows = g.rows();
        assert_eq!(rows.counts[1], 1);
        assert_eq!(rows.counts[7], 1);
        assert_eq!(rows.count, 2);
        assert_eq!(rows.sum, 603.0);
        let secs = g.seconds();
        assert_eq!(secs.counts[1], 1);
        assert_eq!(secs.counts.iter().sum::<u64>(), 1);
        assert_eq!(secs.count, 2);
    }
}
