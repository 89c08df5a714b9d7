//! The forecaster's TOML configuration: load and validate; a configuration that validates must
//! also start the daemon's parts built from it (what `presage check-config` promises).
#![no_main]

use libfuzzer_sys::fuzz_target;
use presage_alerting::dispatch::Routes;
use presage_alerting::inhibit::Inhibitor;
use presage_alerting::lifecycle::Evaluator;
use presage_config::ForecasterConfig;
use presage_forecaster::app::{App, Clock};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match ForecasterConfig::from_toml(text, "fuzz.toml") {
        Ok(config) => config,
        Err(errors) => {
            // Every problem is located and rendered.
            let _ = errors.to_string();
            return;
        }
    };
    if let Err(e) = Evaluator::from_config(&config, None) {
        panic!("a valid configuration whose rules do not compile: {e}");
    }
    if let Err(e) = Routes::from_config(&config) {
        panic!("a valid configuration whose routes do not compile: {e}");
    }
    if let Err(e) = Inhibitor::new(&config.inhibit) {
        panic!("a valid configuration whose inhibit rules do not compile: {e}");
    }
    let _ = App::new(config, Clock::Fixed(presage_fuzz::NOW_MS));
});
