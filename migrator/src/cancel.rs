//! [`Cancel`]: how an operator (the HTTP API, Ctrl-C) stops a running job cleanly. Range
//! workers look at it after each page's checkpoint, so a cancelled job stops with everything it
//! wrote recorded, and a rerun with the same job directory resumes there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// A shared stop flag; clones see the same flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    /// Wakes tasks waiting in [`Cancel::cancelled`] (tables waiting for a slot).
    notify: Notify,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the job to stop at its next checkpoint. Idempotent.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Completes once [`Cancel::cancel`] was called.
    pub async fn cancelled(&self) {
        loop {
            // Registered before the check, so a cancel between the two is not missed.
            let notified = self.0.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_on_cancel() {
        let c = Cancel::new();
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.cancelled().await }
        });
        assert!(!c.is_cancelled());
        c.cancel();
        assert!(waiter.await.is_ok());
        assert!(c.is_cancelled());
        // Already cancelled: returns at once.
        c.cancelled().await;
    }
}
