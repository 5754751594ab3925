//! A shutdown signal that any number of tasks can wait on.

use tokio::sync::watch;

/// Cloneable handle: `trigger` once, every `wait` returns.
#[derive(Clone)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self { sender: watch::Sender::new(false) }
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.sender.borrow()
    }

    /// Completes once the signal fired.
    pub async fn wait(&self) {
        let mut receiver = self.sender.subscribe();
        // The sender lives in `self`, so the wait ends only on the signal.
        let _ = receiver.wait_for(|stop| *stop).await;
    }

    /// A receiver for code that takes a `watch::Receiver<bool>`.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.sender.subscribe()
    }
}
