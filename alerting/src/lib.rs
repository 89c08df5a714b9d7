//! Presage alerting: turns the forecaster's signals into alerts (rules, lifecycle, grouping,
//! silences, inhibition) and delivers them to email, webhooks and Alertmanager.
//!
//! The pipeline follows Alertmanager's stages: rules evaluate signals in event time into alerts
//! (pending → firing → resolved); alerts are routed and grouped; groups are muted by silences and
//! inhibitions, deduplicated against the notification log, and delivered with retries.

pub mod alert;
pub mod notify;
pub mod signal;

pub use alert::{Alert, AlertState, Explanation, Notification};
pub use signal::{Band, ChartData, Eta, LabelSet, ModelContext, ModelFacts, Signal, SignalBody};
