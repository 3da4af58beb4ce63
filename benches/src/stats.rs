//! Percentiles over latency samples and the rows of the printed tables.

use std::time::Duration;

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    micros: Vec<u64>,
    sorted: bool,
}

impl Samples {
    /// An empty set.
    pub fn new() -> Samples {
        Samples::default()
    }

    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        self.micros.push(d.as_micros() as u64);
        self.sorted = false;
    }

    /// Adds samples already in microseconds.
    pub fn extend_micros(&mut self, it: impl IntoIterator<Item = u64>) {
        self.micros.extend(it);
        self.sorted = false;
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The `p`-th percentile (nearest rank) in milliseconds; NaN when empty.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        if !self.sorted {
            self.micros.sort_unstable();
            self.sorted = true;
        }
        let rank = ((p / 100.0) * self.micros.len() as f64).ceil() as usize;
        let idx = rank.clamp(1, self.micros.len()) - 1;
        self.micros[idx] as f64 / 1000.0
    }

    /// The smallest sample in milliseconds.
    pub fn min_ms(&mut self) -> f64 {
        self.percentile_ms(0.0)
    }
}

/// `a / b`, printed as `n/a` when either side is missing.
pub fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "n/a".to_string()
    }
}

/// A number with two decimals, or `-` when missing.
pub fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "-".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::new();
        s.extend_micros((1..=100).map(|i| i * 1000));
        assert_eq!(s.percentile_ms(50.0), 50.0);
        assert_eq!(s.percentile_ms(99.0), 99.0);
        assert_eq!(s.percentile_ms(100.0), 100.0);
        assert_eq!(s.min_ms(), 1.0);
        assert!(Samples::new().percentile_ms(50.0).is_nan());
    }
}
