//! Presage alerting: turns the forecaster's signals into alerts (rules, lifecycle, grouping,
//! silences, inhibition) and delivers them to email, webhooks and Alertmanager.
//!
//! The crate is part of the workspace layout so that the dependency direction
//! `config ← alerting ← forecaster` holds from the start; its pipeline lands with the alerting
//! work.
