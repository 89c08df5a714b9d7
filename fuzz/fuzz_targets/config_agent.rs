//! The agent's TOML configuration, with the checks the agent adds (regular expressions, globs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use presage_config::AgentConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match AgentConfig::from_toml_checked(text, "fuzz.toml", presage_agent::cli::agent_checks) {
        Ok(config) => {
            let _ = config.problems();
            let _ = config.agent.effective_endpoint();
            for scrape in &config.scrape {
                let _ = scrape.effective_timeout(config.agent.interval);
            }
        }
        Err(errors) => {
            let _ = errors.to_string();
        }
    }
});
