//! A flag raised once, for what a busy task checks on every wake-up but almost never sees.
//!
//! A session's loop waits for its client's next request *or* the proxy shutting down *or* a
//! backend connection dying, so every wake-up polls the two rare branches too. Through a
//! `watch` channel each such poll takes its `RwLock` and its `Notify`'s mutex. A [`Signal`]
//! wait registers its task's waker once and afterwards costs one atomic load per poll, as long
//! as it is polled from the same task (the waker compares equal).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

/// A flag raised once; [`Signal::wait`] resolves once it is.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: AtomicBool,
    waiters: Mutex<Waiters>,
}

#[derive(Debug, Default)]
struct Waiters {
    next: u64,
    /// By wait, so a wait that ends unraised removes its own in O(1).
    wakers: HashMap<u64, Waker>,
}

impl Signal {
    /// Raises the flag and wakes every wait (later waits resolve at once).
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut self.lock().wakers);
        for waker in wakers.into_values() {
            waker.wake();
        }
    }

    pub(crate) fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Resolves once the flag is raised (at once if it is).
    pub(crate) fn wait(&self) -> SignalWait<'_> {
        SignalWait {
            signal: self,
            registered: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        // Two plain fields, consistent between statements.
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A wait for a [`Signal`]; see there.
#[derive(Debug)]
pub(crate) struct SignalWait<'a> {
    signal: &'a Signal,
    /// The waker this wait left with the signal, under its key.
    registered: Option<(u64, Waker)>,
}

impl Future for SignalWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.is_raised() {
            return Poll::Ready(());
        }
        let current = matches!(&self.registered, Some((_, w)) if w.will_wake(cx.waker()));
        if !current {
            let mut waiters = self.signal.lock();
            let key = match &self.registered {
                Some((key, _)) => *key,
                None => {
                    waiters.next += 1;
                    waiters.next
                }
            };
            waiters.wakers.insert(key, cx.waker().clone());
            drop(waiters);
            self.registered = Some((key, cx.waker().clone()));
        }
        // Checked again after registering: a raise in between took the waker list before
        // this waker was in it, but its store is visible now.
        if self.signal.is_raised() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for SignalWait<'_> {
    fn drop(&mut self) {
        if let Some((key, _)) = self.registered.take() {
            self.signal.lock().wakers.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_wait_resolves_when_raised_and_at_once_after() {
        let signal = Arc::new(Signal::default());
        let waiting = {
            let signal = signal.clone();
            tokio::spawn(async move { signal.wait().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "resolved before the raise");
        signal.raise();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the raise wakes the wait")
            .expect("task");
        signal.wait().await;
    }

    #[tokio::test]
    async fn a_wait_polled_again_and_again_registers_once_and_dropped_leaves_nothing() {
        let signal = Signal::default();
        {
            let mut wait = std::pin::pin!(signal.wait());
            for _ in 0..100 {
                let polled = std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx))).await;
                assert!(polled.is_pending());
            }
            assert_eq!(signal.lock().wakers.len(), 1, "one registration");
        }
        assert!(
            signal.lock().wakers.is_empty(),
            "the dropped wait removed its waker"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_raise_racing_the_first_poll_is_never_missed() {
        for _ in 0..500 {
            let signal = Arc::new(Signal::default());
            let waiting = {
                let signal = signal.clone();
                tokio::spawn(async move { signal.wait().await })
            };
            let raising = {
                let signal = signal.clone();
                tokio::spawn(async move { signal.raise() })
            };
            raising.await.expect("raise");
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .expect("a wait that raced the raise resolves")
                .expect("task");
        }
    }
}
