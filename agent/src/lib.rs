#![doc = include_str!("../README.md")]

mod agent;
pub mod cli;
mod export;
mod host;
mod logs;
mod net;
mod otlp;
mod resource;
mod scrape;
mod telemetry;

pub use agent::{Error, RunningAgent, start, start_with_env, termination_signal};
#[doc(hidden)]
pub use scrape::parser::scrape_to_requests;
