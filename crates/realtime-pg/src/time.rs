//! PostgreSQL timestamps on the wire: microseconds since 2000-01-01 00:00:00 UTC.

use chrono::{DateTime, Utc};

/// 2000-01-01 00:00:00 UTC in microseconds since the Unix epoch.
pub const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// The wall-clock time as a PostgreSQL wire timestamp.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros() - PG_EPOCH_UNIX_MICROS
}

/// A wire timestamp (e.g. a pgoutput commit time) as UTC, or `None` when out of range.
pub fn to_utc(micros: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros.checked_add(PG_EPOCH_UNIX_MICROS)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways() {
        assert_eq!(to_utc(0).unwrap().to_rfc3339(), "2000-01-01T00:00:00+00:00");
        let t = to_utc(1_500_000).unwrap();
        assert_eq!(t.timestamp_micros(), PG_EPOCH_UNIX_MICROS + 1_500_000);
        assert!(to_utc(i64::MAX).is_none());
        let now = now_micros();
        assert!(now > 800_000_000_000_000, "{now}");
    }
}
