//! Time for the store: write timestamps (µs) and the local "now" (seconds) that TTLs and
//! tombstones are measured against. Injected, so tests expire data without sleeping.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of time.
pub trait Clock: Send + Sync + Debug {
    /// Microseconds since the epoch; successive calls never go backwards and never repeat, so
    /// two writes in a row from one client get increasing timestamps.
    fn now_micros(&self) -> i64;

    /// Seconds since the epoch, for TTLs and local deletion times.
    fn now_seconds(&self) -> u32 {
        u32::try_from(self.now_micros().max(0) / 1_000_000).unwrap_or(u32::MAX)
    }
}

/// The system clock, made strictly increasing.
#[derive(Debug, Default)]
pub struct SystemClock {
    last: AtomicI64,
}

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(prev.saturating_add(1));
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }
}

/// A clock tests move by hand. Each reading advances it by 1 µs so timestamps stay unique.
#[derive(Debug)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    /// Starts at `micros` since the epoch.
    pub fn new(micros: i64) -> Self {
        Self {
            micros: AtomicI64::new(micros),
        }
    }

    pub fn advance_seconds(&self, s: i64) {
        self.micros
            .fetch_add(s.saturating_mul(1_000_000), Ordering::Relaxed);
    }

    pub fn set_micros(&self, micros: i64) {
        self.micros.store(micros, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.micros.fetch_add(1, Ordering::Relaxed)
    }

    fn now_seconds(&self) -> u32 {
        u32::try_from(self.micros.load(Ordering::Relaxed).max(0) / 1_000_000).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_strictly_increases() {
        let c = SystemClock::default();
        let mut prev = c.now_micros();
        for _ in 0..1000 {
            let n = c.now_micros();
            assert!(n > prev);
            prev = n;
        }
    }

    #[test]
    fn manual_clock_moves_by_hand() {
        let c = ManualClock::new(5_000_000);
        assert_eq!(c.now_seconds(), 5);
        c.advance_seconds(10);
        assert_eq!(c.now_seconds(), 15);
        assert!(c.now_micros() < c.now_micros());
    }
}
