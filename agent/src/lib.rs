//! The Presage agent: collects host metrics, scrapes sidecar targets and tails logs, and streams
//! them to the forecaster over OTLP. It depends on `presage-config` only, never on the model or
//! alerting crates, so it stays small.
