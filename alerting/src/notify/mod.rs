//! Notifiers: deliver a [`Notification`] to one receiver.
//!
//! A notifier makes one attempt; [`NotifyError::retryable`] tells the caller whether another
//! attempt may succeed (timeouts, connection errors, 5xx, 429) or not (4xx, a refused
//! recipient), and the retry loop backs off exponentially with jitter.

use std::future::Future;
use std::pin::Pin;

use crate::alert::Notification;

/// A failed delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NotifyError {
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// What went wrong, for logs.
    pub message: String,
}

/// A boxed future, so notifiers can be kept as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Delivers notifications to one receiver.
pub trait Notifier: Send + Sync {
    /// The receiver's kind (`email`, `webhook`, `alertmanager`, `console`), for telemetry.
    fn kind(&self) -> &'static str;

    /// One delivery attempt.
    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), NotifyError>>;
}
