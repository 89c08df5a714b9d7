//! Series selectors (`metric{label="v",other=~"re.*"}`) as the API, the rules and the alert
//! routes and silences parse them. An alert selector rebuilt from its parsed matchers (as
//! silences and inhibit rules are displayed) must parse back to the same matchers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presage_alerting::{LabelSet, Selector as AlertSelector};
use presage_forecaster::store::Selector;

fn label_sets() -> Vec<LabelSet> {
    let set = |pairs: &[(&str, &str)]| -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    vec![
        LabelSet::new(),
        set(&[("__name__", "up"), ("job", "node"), ("instance", "a:9100")]),
        set(&[
            ("metric", "up"),
            ("severity", "critical"),
            ("alertname", "X"),
        ]),
        set(&[("__name__", ""), ("a", "\u{1F600}\\\"\n")]),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sets = label_sets();
    if let Ok(sel) = Selector::parse(text) {
        for set in &sets {
            let _ = sel.matches(set.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
    }
    for parsed in [
        AlertSelector::parse(text),
        AlertSelector::parse_for_alerts(text),
    ] {
        let Ok(sel) = parsed else { continue };
        for set in &sets {
            let _ = sel.matches(set);
        }
        for alt in sel.alternatives() {
            let rebuilt = AlertSelector::from_matchers(alt.clone());
            match AlertSelector::parse(rebuilt.as_str()) {
                Ok(again) => assert_eq!(
                    again.alternatives().concat(),
                    *alt,
                    "`{text}` rebuilt as `{rebuilt}` parses to other matchers"
                ),
                Err(e) => panic!("`{text}` rebuilt as `{rebuilt}` does not parse: {e}"),
            }
        }
    }
});
