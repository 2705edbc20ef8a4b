//! Throughput control: global rows/s and bytes/s token buckets and the in-flight write bound,
//! shared by every table and range of a job; and which driver errors are worth a retry.

use std::sync::Arc;
use std::time::Duration;

use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A token bucket of `rate` tokens per second holding at most one second's worth. Taking more
/// than is there leaves a debt the taker sleeps off, so a huge row is never refused, only
/// delayed.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    /// (tokens available, may be negative; when they were last refilled).
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn new(rate: u64) -> Self {
        let rate = rate.max(1) as f64;
        Self {
            rate,
            state: Mutex::new((rate, Instant::now())),
        }
    }

    /// Takes `n` tokens; returns how long the caller waited.
    pub async fn take(&self, n: u64) -> Duration {
        let wait = {
            let mut s = self.state.lock().await;
            let now = Instant::now();
            let refill = now.duration_since(s.1).as_secs_f64() * self.rate;
            s.0 = (s.0 + refill).min(self.rate) - n as f64;
            s.1 = now;
            if s.0 >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-s.0 / self.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }
}

/// The job's limits, shared.
#[derive(Debug, Clone)]
pub struct Limits {
    pub rows: Option<Arc<TokenBucket>>,
    pub bytes: Option<Arc<TokenBucket>>,
    /// One permit per write request in flight (one row's writes, or a batch of rows).
    pub in_flight: Arc<Semaphore>,
}

impl Limits {
    pub fn new(rows: Option<u64>, bytes: Option<u64>, concurrency: usize) -> Self {
        Self {
            rows: rows.map(|r| Arc::new(TokenBucket::new(r))),
            bytes: bytes.map(|b| Arc::new(TokenBucket::new(b))),
            in_flight: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    /// Waits for the rate limits to allow one row of `bytes`, then for a write slot.
    /// Returns the slot and how long the rate limits held the row back.
    pub async fn admit(&self, bytes: u64) -> (OwnedSemaphorePermit, Duration) {
        let waited = self.throttle(1, bytes).await;
        (self.slot().await, waited)
    }

    /// Waits for the rate limits to allow `rows` rows of `bytes` in all; returns how long.
    pub async fn throttle(&self, rows: u64, bytes: u64) -> Duration {
        let mut waited = Duration::ZERO;
        if let Some(r) = &self.rows {
            waited += r.take(rows).await;
        }
        if let Some(b) = &self.bytes {
            waited += b.take(bytes).await;
        }
        waited
    }

    /// Waits for a write slot: one per request in flight (a row's writes, or a batch).
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        // The semaphore is never closed, so acquiring cannot fail; a closed one would mean
        // shutdown, where proceeding without a slot for the last rows is harmless.
        loop {
            if let Ok(p) = self.in_flight.clone().acquire_owned().await {
                break p;
            }
        }
    }
}

/// Whether retrying `e` can help: timeouts, overload, unavailable replicas and lost
/// connections can; statements the cluster rejects (syntax, types, auth) cannot.
pub fn is_retryable(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => !matches!(
            db,
            DbError::SyntaxError
                | DbError::Invalid
                | DbError::AlreadyExists { .. }
                | DbError::FunctionFailure { .. }
                | DbError::AuthenticationError
                | DbError::Unauthorized
                | DbError::ConfigError
                | DbError::ProtocolError
        ),
        ExecutionError::LastAttemptError(RequestAttemptError::SerializationError(_))
        | ExecutionError::BadQuery(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_delays_past_its_rate() {
        let b = TokenBucket::new(10);
        // A full second's burst goes through at once …
        assert_eq!(b.take(10).await, Duration::ZERO);
        // … the next five tokens cost half a second.
        let waited = b.take(5).await;
        assert_eq!(waited, Duration::from_millis(500));
    }
}
