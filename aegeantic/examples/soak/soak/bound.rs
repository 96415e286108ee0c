//! The limiter's bound, checked online over the admission log: in every window of length
//! `D`, at most `burst + rate · D` admissions.

/// Admissions in time order, and the worst window seen so far.
///
/// For admissions `i ≤ j` at times `t_i ≤ t_j`, the window `[t_i, t_j]` holds `j - i + 1`
/// of them, so the bound holds everywhere when `(j - rate·t_j) - (i - rate·t_i) + 1 ≤ burst`
/// for all pairs: keeping the least `i - rate·t_i` makes each admission one comparison, and
/// the log need not be kept.
pub struct BoundCheck {
    rate: f64,
    burst: f64,
    count: u64,
    least: f64,
    last: f64,
    /// The largest `admissions - (burst + rate·D)` over all windows.
    pub worst_excess: f64,
    /// Admissions that reached the check out of time order, counted at the latest time seen.
    pub late: u64,
}

impl BoundCheck {
    pub fn new(rate: f64, burst: u32) -> Self {
        BoundCheck {
            rate,
            burst: f64::from(burst),
            count: 0,
            least: f64::INFINITY,
            last: f64::NEG_INFINITY,
            worst_excess: f64::NEG_INFINITY,
            late: 0,
        }
    }

    pub fn admissions(&self) -> u64 {
        self.count
    }

    /// One admission at `at` seconds; the calls come in time order.
    pub fn admit(&mut self, at: f64) {
        let at = if at < self.last {
            self.late += 1;
            self.last
        } else {
            at
        };
        self.last = at;
        let offset = self.count as f64 - self.rate * at;
        self.least = self.least.min(offset);
        let excess = offset - self.least + 1.0 - self.burst;
        self.worst_excess = self.worst_excess.max(excess);
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::BoundCheck;

    #[test]
    fn a_burst_then_the_rate_is_within_and_one_more_is_not() {
        let mut check = BoundCheck::new(10.0, 5);
        for _ in 0..5 {
            check.admit(100.0);
        }
        for n in 1..=20 {
            check.admit(100.0 + f64::from(n) * 0.1);
        }
        assert!(check.worst_excess <= 1e-9, "{}", check.worst_excess);
        check.admit(102.0);
        assert!(check.worst_excess > 0.5, "{}", check.worst_excess);
    }
}
