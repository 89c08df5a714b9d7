//! The tailer driven poll by poll on real files, with acknowledgements simulated by applying
//! a batch's checkpoints (as the exporter does when the forecaster answers).

use std::io::Write;
use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use presage_config::AgentSettings;

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    store: Arc<Mutex<CheckpointStore>>,
    tel: Arc<Telemetry>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let store = CheckpointStore::open(&dir.path().join("checkpoints.json")).unwrap();
        Self {
            store: Arc::new(Mutex::new(store)),
            tel: Arc::new(Telemetry::new(&[], 1)),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("logs").join(name)
    }

    fn cfg(&self) -> LogsConfig {
        let mut c = LogsConfig::new(vec![
            self.dir.path().join("logs/*.log").display().to_string(),
        ]);
        c.poll_interval = Duration::from_millis(10);
        c.rotate_wait = Duration::from_secs(2);
        c
    }

    fn tailer(&self, cfg: LogsConfig) -> Tailer {
        self.tailer_resuming(cfg, HashMap::new())
    }

    fn tailer_resuming(&self, cfg: LogsConfig, resume: HashMap<FileKey, Checkpoint>) -> Tailer {
        let identity = Identity::detect(
            &AgentSettings::default(),
            &|_| None,
            Path::new("/nonexistent"),
        );
        Tailer::new(
            &[cfg],
            &identity,
            self.store.clone(),
            resume,
            self.tel.clone(),
            1000,
        )
        .unwrap()
    }

    /// Reopens the store from disk, as a restarted agent does.
    fn restart_store(&mut self) {
        let store = CheckpointStore::open(&self.dir.path().join("checkpoints.json")).unwrap();
        self.store = Arc::new(Mutex::new(store));
    }

    fn ack(&self, batches: &[Batch]) {
        let mut s = self.store.lock().unwrap();
        for b in batches {
            s.apply(&b.checkpoints).unwrap();
        }
    }
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Bodies and severities of the batches, in order.
fn records(batches: &[Batch]) -> Vec<(String, String)> {
    batches
        .iter()
        .flat_map(|b| {
            ExportLogsServiceRequest::decode(b.payload.clone())
                .unwrap()
                .resource_logs
                .into_iter()
                .flat_map(|r| r.scope_logs)
                .flat_map(|s| s.log_records)
        })
        .map(|r| {
            let body = match r.body.and_then(|b| b.value) {
                Some(any_value::Value::StringValue(s)) => s,
                other => format!("{other:?}"),
            };
            (body, r.severity_text)
        })
        .collect()
}

fn bodies(batches: &[Batch]) -> Vec<String> {
    records(batches).into_iter().map(|(b, _)| b).collect()
}

/// Polls at successive instants, far enough apart for every source to be due — never behind
/// the real clock, which a tailer created meanwhile starts from.
struct Clock(Instant);

impl Clock {
    fn new() -> Self {
        Clock(Instant::now())
    }
    fn next(&mut self) -> Instant {
        self.skip(Duration::from_millis(20))
    }
    fn skip(&mut self, d: Duration) -> Instant {
        self.0 = self.0.max(Instant::now()) + d;
        self.0
    }
}

#[test]
fn starts_at_the_end_then_follows_and_picks_up_new_files() {
    let f = Fixture::new();
    append(&f.path("app.log"), "old 1\nold 2\n");
    let mut t = f.tailer(f.cfg());
    let mut clock = Clock::new();
    assert!(t.poll(clock.next()).is_empty());
    append(
        &f.path("app.log"),
        "ERROR new 1\n{\"level\":\"warn\",\"msg\":\"x\"}\n",
    );
    let b = t.poll(clock.next());
    assert_eq!(
        records(&b),
        vec![
            ("ERROR new 1".to_string(), "ERROR".to_string()),
            (
                "{\"level\":\"warn\",\"msg\":\"x\"}".to_string(),
                "WARN".to_string()
            ),
        ]
    );
    assert_eq!(b[0].items, 2);
    // A file created after the start is read from its beginning.
    append(&f.path("other.log"), "first line of a new file\n");
    assert_eq!(
        bodies(&t.poll(clock.next())),
        vec!["first line of a new file"]
    );
    // Not matched by the glob: ignored.
    append(&f.path("skip.txt"), "nope\n");
    assert!(t.poll(clock.next()).is_empty());
    assert_eq!(f.tel.log_lines.get(), 3);
    assert_eq!(f.tel.log_files.get(), 2);
}

#[test]
fn beginning_reads_existing_content() {
    let f = Fixture::new();
    append(&f.path("app.log"), "old 1\nold 2\n");
    let mut cfg = f.cfg();
    cfg.start_at = StartAt::Beginning;
    let mut t = f.tailer(cfg);
    assert_eq!(bodies(&t.poll(Clock::new().next())), vec!["old 1", "old 2"]);
}

#[test]
fn rename_and_create_rotation_loses_nothing() {
    let f = Fixture::new();
    let live = f.path("app.log");
    append(&live, "");
    let mut t = f.tailer(f.cfg());
    let mut clock = Clock::new();
    t.poll(clock.next());
    append(&live, "a1\na2\n");
    assert_eq!(bodies(&t.poll(clock.next())), vec!["a1", "a2"]);
    // The writer's last lines land in the file after it was renamed away.
    std::fs::rename(&live, f.path("app.log.1")).unwrap();
    append(&f.path("app.log.1"), "a3 late\n");
    append(&live, "b1\n");
    let mut got = bodies(&t.poll(clock.next()));
    got.sort();
    assert_eq!(got, vec!["a3 late", "b1"]);
    // The rotated file is watched until it has been quiet for rotate_wait, then closed.
    append(&f.path("app.log.1"), "a4 later\n");
    assert_eq!(bodies(&t.poll(clock.next())), vec!["a4 later"]);
    assert_eq!(f.tel.log_files.get(), 2);
    t.poll(clock.skip(Duration::from_secs(3)));
    assert_eq!(f.tel.log_files.get(), 1);
    append(&live, "b2\n");
    assert_eq!(bodies(&t.poll(clock.next())), vec!["b2"]);
}

#[test]
fn copytruncate_rotation_rereads_from_the_start() {
    let f = Fixture::new();
    let live = f.path("app.log");
    append(&live, "");
    let mut t = f.tailer(f.cfg());
    let mut clock = Clock::new();
    t.poll(clock.next());
    append(&live, "before 1\nbefore 2\n");
    assert_eq!(bodies(&t.poll(clock.next())), vec!["before 1", "before 2"]);
    std::fs::copy(&live, f.path("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&live)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&live, "after 1\n");
    assert_eq!(bodies(&t.poll(clock.next())), vec!["after 1"]);
    assert_eq!(f.tel.log_truncations.get(), 1);
}

#[test]
fn truncated_and_rewritten_past_the_old_offset_is_detected_by_fingerprint() {
    let f = Fixture::new();
    let live = f.path("app.log");
    append(&live, "");
    let mut t = f.tailer(f.cfg());
    let mut clock = Clock::new();
    t.poll(clock.next());
    append(&live, "short\n");
    assert_eq!(bodies(&t.poll(clock.next())), vec!["short"]);
    // Truncated and refilled with more than before between two polls.
    std::fs::write(
        &live,
        "a completely different first line\nand another one\n",
    )
    .unwrap();
    assert_eq!(
        bodies(&t.poll(clock.next())),
        vec!["a completely different first line", "and another one"]
    );
}

#[test]
fn restart_resumes_at_the_acknowledged_position() {
    let mut f = Fixture::new();
    let live = f.path("app.log");
    append(&live, "");
    let mut clock = Clock::new();
    {
        let mut t = f.tailer(f.cfg());
        t.poll(clock.next());
        append(&live, "1\n2\n");
        let b = t.poll(clock.next());
        assert_eq!(bodies(&b), vec!["1", "2"]);
        f.ack(&b);
        append(&live, "3\n");
        // Read but never acknowledged (the agent dies before the forecaster answers).
        assert_eq!(bodies(&t.poll(clock.next())), vec!["3"]);
    }
    append(&live, "4 while down\n");
    f.restart_store();
    let mut t = f.tailer(f.cfg());
    assert_eq!(bodies(&t.poll(clock.next())), vec!["3", "4 while down"]);
}

#[test]
fn restart_resumes_after_what_the_spool_holds() {
    let mut f = Fixture::new();
    let live = f.path("app.log");
    append(&live, "");
    let mut clock = Clock::new();
    let spooled = {
        let mut t = f.tailer(f.cfg());
        t.poll(clock.next());
        append(&live, "1\n2\n");
        t.poll(clock.next())
    };
    // The batch sits in the spool (not acknowledged); its position is recovered from it.
    let resume: HashMap<FileKey, Checkpoint> = spooled[0]
        .checkpoints
        .iter()
        .map(|c| (c.key(), c.clone()))
        .collect();
    append(&live, "3\n");
    f.restart_store();
    let mut t = f.tailer_resuming(f.cfg(), resume);
    assert_eq!(bodies(&t.poll(clock.next())), vec!["3"]);
}

#[test]
fn files_created_while_the_agent_was_down_are_read_whole() {
    let mut f = Fixture::new();
    let mut clock = Clock::new();
    {
        let mut t = f.tailer(f.cfg());
        t.poll(clock.next());
    }
    append(&f.path("new.log"), "written while down\n");
    f.restart_store();
    let mut t = f.tailer(f.cfg());
    assert_eq!(bodies(&t.poll(clock.next())), vec!["written while down"]);
}

#[test]
fn multiline_records_and_their_checkpoints() {
    let mut f = Fixture::new();
    let live = f.path("app.log");
    append(&live, "");
    let mut cfg = f.cfg();
    cfg.multiline_start = Some(r"^\d{4}-".into());
    cfg.multiline_timeout = Duration::from_secs(1);
    let mut clock = Clock::new();
    {
        let mut t = f.tailer(cfg.clone());
        t.poll(clock.next());
        append(
            &live,
            "2024-01-01 ERROR boom\n  at x\n  at y\n2024-01-01 INFO next\n",
        );
        let b = t.poll(clock.next());
        assert_eq!(
            records(&b),
            vec![(
                "2024-01-01 ERROR boom\n  at x\n  at y".into(),
                "ERROR".into()
            )]
        );
        f.ack(&b);
        // The second record is pending when the agent stops: it is not lost.
    }
    f.restart_store();
    let mut t = f.tailer(cfg);
    t.poll(clock.next());
    append(&live, "  at z\n");
    assert!(t.poll(clock.next()).is_empty());
    let b = t.poll(clock.skip(Duration::from_secs(2)));
    assert_eq!(bodies(&b), vec!["2024-01-01 INFO next\n  at z"]);
}

#[test]
fn big_polls_are_split_with_increasing_checkpoints() {
    let f = Fixture::new();
    let live = f.path("app.log");
    append(&live, "");
    let identity = Identity::detect(
        &AgentSettings::default(),
        &|_| None,
        Path::new("/nonexistent"),
    );
    let mut t = Tailer::new(
        &[f.cfg()],
        &identity,
        f.store.clone(),
        HashMap::new(),
        f.tel.clone(),
        3,
    )
    .unwrap();
    let mut clock = Clock::new();
    t.poll(clock.next());
    let text: String = (0..7).map(|i| format!("line {i}\n")).collect();
    append(&live, &text);
    let b = t.poll(clock.next());
    assert_eq!(b.iter().map(|b| b.items).collect::<Vec<_>>(), vec![3, 3, 1]);
    let offsets: Vec<u64> = b.iter().map(|b| b.checkpoints[0].offset).collect();
    assert_eq!(offsets, vec![21, 42, 49]);
    assert_eq!(bodies(&b).len(), 7);
}

#[test]
fn invalid_patterns_are_reported() {
    let mut cfg = LogsConfig::new(vec!["/a/[".into()]);
    cfg.multiline_start = Some("(".into());
    let problems = check(2, &cfg);
    assert_eq!(problems.len(), 2);
    assert_eq!(problems[0].0, "logs[2].paths[0]");
    assert_eq!(problems[1].0, "logs[2].multiline_start");
}
