//! Presage alerting: turns the forecaster's signals into alerts (rules, lifecycle, grouping,
//! silences, inhibition) and delivers them to email, webhooks and Alertmanager.
//!
//! The pipeline follows Alertmanager's stages: rules evaluate signals in event time into alerts
//! (pending → firing → resolved); alerts are routed and grouped; groups are muted by silences and
//! inhibitions, deduplicated against the notification log, and delivered with retries.
//!
//! - [`rules`] — built-in and configured rules, and what each signal means for them;
//! - [`lifecycle`] — conditions into alerts, in event time, with explanations;
//! - [`explain`] — explanations and the remediation catalog;
//! - [`dispatch`] and [`nflog`] — routing, grouping, timers and deduplication, in wall-clock
//!   time;
//! - [`silence`] and [`inhibit`] — muting;
//! - [`state`] — persistence;
//! - [`service`] — the task that runs it all, and its handle.

pub mod alert;
pub mod chart;
pub mod dispatch;
pub mod error;
pub mod explain;
pub mod inhibit;
pub mod lifecycle;
pub mod matcher;
pub mod nflog;
pub mod notify;
pub mod rules;
pub mod service;
pub mod signal;
pub mod silence;
pub mod state;
pub mod template;

#[cfg(test)]
mod tests;

pub use alert::{Alert, AlertState, Explanation, Notification};
pub use error::{Error, Result};
pub use matcher::{LabelMatcher, Selector};
pub use rules::{default_rules, effective_rules};
pub use service::{
    AlertEntry, AlertingHandle, AlertingService, RetryPolicy, ServiceOptions, Stats,
};
pub use signal::{Band, ChartData, Eta, LabelSet, ModelContext, ModelFacts, Signal, SignalBody};
pub use silence::{Silence, SilenceSpec};
