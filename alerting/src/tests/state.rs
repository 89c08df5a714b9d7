//! The state file.

use super::*;
use crate::error::Error;
use crate::lifecycle::Evaluator;
use crate::nflog::{Entry, NotificationLog};
use crate::silence::{MatchersInput, SilenceSpec, Silences, TimeInput};
use crate::state::{PersistedState, StateFile, VERSION};

#[test]
fn state_round_trips_and_a_missing_file_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let file = StateFile::in_dir(dir.path());
    assert_eq!(file.load().unwrap(), None);

    let mut e = Evaluator::from_config(&config(""), None).unwrap();
    let s = series(&[
        ("__name__", "system_filesystem_utilization"),
        ("mountpoint", "/"),
    ]);
    e.ingest(
        &[breach(
            T0,
            &s,
            "DiskWillFill",
            0.9,
            0.8,
            Some((1.0, 2.0, 3.0)),
            1e-5,
        )],
        0,
    );
    e.evaluate(T0);
    let mut silences = Silences::new();
    silences
        .create(
            &SilenceSpec {
                id: None,
                matchers: MatchersInput::Selector(r#"{alertname="X"}"#.into()),
                starts_at: None,
                ends_at: Some(TimeInput::Millis(T0 + 1000)),
                duration: None,
                created_by: "me".into(),
                comment: String::new(),
            },
            T0,
        )
        .unwrap();
    let mut nflog = NotificationLog::new();
    nflog.record(
        "g",
        "hook",
        Entry {
            firing: ["abc".to_string()].into(),
            resolved: Default::default(),
            sent_at_ms: T0,
        },
    );
    let state = PersistedState {
        version: VERSION,
        saved_at_ms: T0,
        alerts: e.snapshot(),
        silences,
        nflog,
    };
    file.save(&state).unwrap();
    let loaded = file.load().unwrap().unwrap();
    assert_eq!(loaded, state);
    // Borrowed encoding writes the same document.
    let bytes = StateFile::encode_parts(T0, &state.alerts, &state.silences, &state.nflog).unwrap();
    let decoded: PersistedState = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(decoded, state);
    // Restored alerts keep their fingerprints.
    let mut e2 = Evaluator::from_config(&config(""), None).unwrap();
    assert_eq!(e2.restore(loaded.alerts), 1);
    let fp = e.alerts().next().unwrap().0.fingerprint.clone();
    assert!(e2.alert(&fp).is_some());
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["alerting-state.json".to_string()]);
}

#[test]
fn a_corrupt_file_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let file = StateFile::in_dir(dir.path());
    std::fs::write(file.path(), b"{\"version\": 1, \"alerts\": [").unwrap();
    match file.load() {
        Err(Error::StateCorrupt { path, reason }) => {
            assert!(path.ends_with("alerting-state.json"));
            assert!(!reason.is_empty());
        }
        other => panic!("expected a corrupt-state error, got {other:?}"),
    }
    std::fs::write(file.path(), b"{\"version\": 99}").unwrap();
    let err = file.load().unwrap_err().to_string();
    assert!(err.contains("version 99"), "{err}");
}
