//! When a slot someone else holds may be taken: the slot is the lock and the holder's standby
//! status updates are its lease. A live holder (another server instance, or an old container
//! of a rolling deploy) replies at least every lease / 3; a holder whose process died loses
//! its connection and PostgreSQL frees the slot by itself. Only a holder whose replies have
//! stopped for a whole lease is provably gone and is terminated; anyone else waits as a
//! standby, trying again every [`STANDBY_RETRY`].
//!
//! The silence is measured here, on this process's monotonic clock, from the first time the
//! same walsender was seen with the same `reply_time` (which is the holder's own clock, so it
//! is only ever compared with itself), and the termination re-checks in one statement that
//! nothing changed ([`realtime_pg::slot_holder::terminate_unchanged_holder`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use realtime_pg::replication::STATUS_INTERVAL;
use realtime_pg::slot_holder::SlotHolder;

/// How long a holder may stay silent before it counts as gone: three status intervals.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3 * STATUS_INTERVAL.as_secs());

/// How often a standby tries the slot again (randomised down to half), so it takes over
/// within a couple of seconds of the holder's connection closing.
pub const STANDBY_RETRY: Duration = Duration::from_secs(1);

/// A lease length and what was last seen of the slot's holder. Clones share the sighting.
#[derive(Debug, Clone)]
pub struct Lease {
    duration: Duration,
    seen: Arc<Mutex<Option<Sighting>>>,
}

/// One walsender in one reply state, and since when it has been seen so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sighting {
    pid: i32,
    backend_start_us: i64,
    reply_time_us: Option<i64>,
    since: Instant,
}

/// What the holder looks like now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It replied within the lease (or was first seen less than a lease ago).
    Live {
        /// How long it has been seen without a new reply.
        silent_for: Duration,
    },
    /// No reply for a whole lease: it may be terminated.
    Expired {
        /// How long it has been seen without a new reply.
        silent_for: Duration,
    },
    /// No walsender (a backend using the slot over SQL, or one not visible to this role):
    /// never terminated.
    Unknown,
}

impl Default for Lease {
    fn default() -> Self {
        Lease::new(DEFAULT_LEASE)
    }
}

impl Lease {
    /// A lease of `duration` (at least 3 ms, so the status interval is not zero).
    pub fn new(duration: Duration) -> Lease {
        Lease {
            duration: duration.max(Duration::from_millis(3)),
            seen: Arc::default(),
        }
    }

    /// The lease length.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// How often our own holder must report at least: a third of the lease, so one lost or
    /// late update never makes it look gone.
    pub fn status_interval(&self, wanted: Duration) -> Duration {
        wanted.min(self.duration / 3)
    }

    /// Judges `holder` as seen at `now`.
    pub fn judge(&self, holder: &SlotHolder, now: Instant) -> Verdict {
        let Some(w) = &holder.walsender else {
            return Verdict::Unknown;
        };
        let mut seen = match self.seen.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let same = |s: &Sighting| {
            s.pid == holder.pid
                && s.backend_start_us == w.backend_start_us
                && s.reply_time_us == w.reply_time_us
        };
        let since = match *seen {
            Some(s) if same(&s) => s.since,
            _ => {
                *seen = Some(Sighting {
                    pid: holder.pid,
                    backend_start_us: w.backend_start_us,
                    reply_time_us: w.reply_time_us,
                    since: now,
                });
                now
            }
        };
        let silent_for = now.saturating_duration_since(since);
        if silent_for >= self.duration {
            Verdict::Expired { silent_for }
        } else {
            Verdict::Live { silent_for }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use realtime_pg::slot_holder::Walsender;

    fn holder(pid: i32, reply: Option<i64>) -> SlotHolder {
        SlotHolder {
            pid,
            walsender: Some(Walsender {
                backend_start_us: 1,
                reply_time_us: reply,
                state: Some("streaming".into()),
                application_name: None,
                client_addr: None,
            }),
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_replying_holder_never_expires() {
        let lease = Lease::new(3 * S);
        let t0 = Instant::now();
        for i in 0..100 {
            let v = lease.judge(&holder(42, Some(i)), t0 + S * i as u32);
            assert_eq!(
                v,
                Verdict::Live {
                    silent_for: Duration::ZERO
                }
            );
        }
    }

    #[test]
    fn a_silent_holder_expires_after_the_lease() {
        let lease = Lease::new(3 * S);
        let t0 = Instant::now();
        let h = holder(42, Some(7));
        assert!(matches!(lease.judge(&h, t0), Verdict::Live { .. }));
        assert!(matches!(lease.judge(&h, t0 + 2 * S), Verdict::Live { .. }));
        assert_eq!(
            lease.judge(&h, t0 + 3 * S),
            Verdict::Expired { silent_for: 3 * S }
        );
        // It replies after all: a new lease starts.
        assert!(matches!(
            lease.judge(&holder(42, Some(8)), t0 + 4 * S),
            Verdict::Live { .. }
        ));
        // A holder that never replied is timed from when it was first seen.
        let never = holder(43, None);
        assert!(matches!(
            lease.judge(&never, t0 + 5 * S),
            Verdict::Live { .. }
        ));
        assert!(matches!(
            lease.judge(&never, t0 + 8 * S),
            Verdict::Expired { .. }
        ));
        // Another session (same pid reused, other start) starts over.
        let mut other = never.clone();
        if let Some(w) = other.walsender.as_mut() {
            w.backend_start_us = 2;
        }
        assert!(matches!(
            lease.judge(&other, t0 + 9 * S),
            Verdict::Live { .. }
        ));
    }

    #[test]
    fn a_holder_that_is_no_walsender_is_never_judged_gone() {
        let lease = Lease::new(3 * S);
        let plain = SlotHolder {
            pid: 1,
            walsender: None,
        };
        assert_eq!(lease.judge(&plain, Instant::now()), Verdict::Unknown);
    }

    #[test]
    fn our_status_interval_fits_three_times_in_the_lease() {
        assert_eq!(
            Lease::default().status_interval(STATUS_INTERVAL),
            STATUS_INTERVAL
        );
        assert_eq!(Lease::new(3 * S).status_interval(STATUS_INTERVAL), S);
    }
}
