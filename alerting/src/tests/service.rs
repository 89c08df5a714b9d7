//! The service end to end, with tokio's clock paused: the wall clock is derived from it, so
//! group timers, retries and deadlines run in virtual time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::explain::FixedForecast;
use super::*;
use crate::alert::{AlertState, Notification};
use crate::notify::{BoxFuture, Notifier, NotifyError};
use crate::service::{
    AlertingHandle, AlertingService, RetryPolicy, ServiceOptions, deliver_with_retries,
};
use crate::signal::ModelContext;
use crate::silence::{MatchersInput, SilenceSpec};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Behaviour {
    Accept,
    Fail { retryable: bool },
    Hang,
}

/// Records what it is sent; behaves as told.
struct Recorder {
    behaviour: Mutex<Behaviour>,
    /// Fail this many attempts first (retryably), then behave.
    fail_first: AtomicUsize,
    attempts: AtomicUsize,
    sent: Mutex<Vec<(Instant, Notification)>>,
}

impl Recorder {
    fn new(behaviour: Behaviour) -> Arc<Self> {
        Arc::new(Self {
            behaviour: Mutex::new(behaviour),
            fail_first: AtomicUsize::new(0),
            attempts: AtomicUsize::new(0),
            sent: Mutex::new(Vec::new()),
        })
    }

    fn count(&self) -> usize {
        self.sent.lock().len()
    }

    fn last(&self) -> Notification {
        self.sent.lock().last().map(|(_, n)| n.clone()).unwrap()
    }
}

impl Notifier for Recorder {
    fn kind(&self) -> &'static str {
        "recorder"
    }

    fn notify<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self
                .fail_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                .is_ok()
            {
                return Err(NotifyError {
                    retryable: true,
                    message: "503".into(),
                });
            }
            let b = *self.behaviour.lock();
            match b {
                Behaviour::Accept => {
                    self.sent.lock().push((Instant::now(), n.clone()));
                    Ok(())
                }
                Behaviour::Fail { retryable } => Err(NotifyError {
                    retryable,
                    message: "refused".into(),
                }),
                Behaviour::Hang => std::future::pending().await,
            }
        })
    }
}

const CONFIG: &str = r#"
[alerting]
default_rules = false

[[rules]]
name = "HighLoad"
kind = "static"
select = "load"
threshold = 100

[[receivers]]
name = "a"
console = {}
[[receivers]]
name = "b"
console = {}

[[routes]]
receivers = ["a", "b"]
group_by = ["alertname"]
group_wait = "10s"
group_interval = "1m"
repeat_interval = "4h"
"#;

fn wall_clock() -> impl Fn() -> i64 + Send + Sync + 'static {
    let start = Instant::now();
    move || T0 + start.elapsed().as_millis() as i64
}

fn options() -> ServiceOptions {
    ServiceOptions {
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            max_attempts: 4,
            max_elapsed: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(5),
        },
        ..ServiceOptions::default()
    }
}

fn start(
    toml: &str,
    a: &Arc<Recorder>,
    b: &Arc<Recorder>,
    dir: Option<PathBuf>,
) -> (AlertingHandle, tokio::task::JoinHandle<()>) {
    let mut notifiers: BTreeMap<String, Arc<dyn Notifier>> = BTreeMap::new();
    notifiers.insert("a".into(), Arc::clone(a) as Arc<dyn Notifier>);
    notifiers.insert("b".into(), Arc::clone(b) as Arc<dyn Notifier>);
    let ctx: Arc<dyn ModelContext> = Arc::new(FixedForecast { peak: 150.0 });
    AlertingService::spawn_with_options(&config(toml), notifiers, ctx, dir, wall_clock(), options())
        .unwrap()
}

async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lets virtual time pass with the service running.
async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
}

fn high(at: i64) -> Vec<crate::signal::Signal> {
    vec![normal_step(
        at,
        &series(&[("__name__", "load"), ("host_name", "web-1")]),
        150.0,
    )]
}

#[tokio::test(start_paused = true)]
async fn a_firing_alert_is_notified_after_group_wait_with_charts_and_stats() {
    let (a, b) = (
        Recorder::new(Behaviour::Accept),
        Recorder::new(Behaviour::Accept),
    );
    let (h, task) = start(CONFIG, &a, &b, None);
    let t0 = Instant::now();
    assert!(h.send(high(T0)).await);
    h.tick(T0);
    wait_for("both receivers", Duration::from_secs(30), || {
        a.count() == 1 && b.count() == 1
    })
    .await;
    let (at, n) = a.sent.lock()[0].clone();
    let waited = at - t0;
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "{waited:?}"
    );
    assert_eq!(n.receiver, "a");
    assert_eq!(n.status, "firing");
    assert_eq!(n.alerts.len(), 1);
    assert_eq!(n.alerts[0].labels["alertname"], "HighLoad");
    assert_eq!(n.group_labels, labels(&[("alertname", "HighLoad")]));
    assert!(
        n.charts.contains_key(&n.alerts[0].fingerprint),
        "chart attached"
    );
    assert_eq!(n.external_url, "http://127.0.0.1:9470");
    let stats = h.stats();
    assert_eq!(stats.signals_received, 1);
    assert_eq!(stats.alerts_firing, 1);
    assert_eq!(stats.receivers["a"].sent, 1);
    assert_eq!(stats.receivers["a"].kind, "recorder");
    // One latency sample per alert (the first delivery), about group_wait.
    assert_eq!(stats.fire_to_notify_seconds.len(), 1);
    let l = stats.latency_quantile(0.99).unwrap();
    assert!((10.0..11.0).contains(&l), "{l}");
    // Unchanged: nothing more for a while (repeat_interval is 4h).
    run_for(Duration::from_secs(600)).await;
    assert_eq!(a.count(), 1);
    // Resolution: the series clears; one resolved notification.
    h.send(vec![normal_step(
        T0 + MIN,
        &series(&[("__name__", "load"), ("host_name", "web-1")]),
        10.0,
    )])
    .await;
    h.tick(T0 + MIN);
    wait_for("resolution", Duration::from_secs(120), || a.count() == 2).await;
    assert_eq!(a.last().status, "resolved");
    assert_eq!(a.last().alerts[0].state, AlertState::Resolved);
    h.shutdown().await;
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_silence_suppresses_and_expiring_it_lets_the_alert_through() {
    let (a, b) = (
        Recorder::new(Behaviour::Accept),
        Recorder::new(Behaviour::Accept),
    );
    let (h, task) = start(CONFIG, &a, &b, None);
    let id = h
        .create_silence(&SilenceSpec {
            id: None,
            matchers: MatchersInput::Selector(r#"{alertname="HighLoad"}"#.into()),
            starts_at: None,
            ends_at: None,
            duration: Some("2h".into()),
            created_by: "ops".into(),
            comment: "maintenance".into(),
        })
        .unwrap();
    assert_eq!(h.silences().len(), 1);
    h.send(high(T0)).await;
    h.tick(T0);
    run_for(Duration::from_secs(200)).await;
    assert_eq!(a.count() + b.count(), 0, "silenced");
    let alerts = h.alerts().await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].silenced_by, vec![id.clone()]);
    assert!(alerts[0].muted());
    assert_eq!(alerts[0].receivers, vec!["a", "b"]);
    assert_eq!(h.stats().alerts_silenced, 1);
    h.expire_silence(&id).unwrap();
    let t = Instant::now();
    wait_for("unsilenced", Duration::from_secs(120), || a.count() == 1).await;
    assert!(
        Instant::now() - t <= Duration::from_secs(61),
        "within one group_interval"
    );
    assert!(h.alerts().await.unwrap()[0].silenced_by.is_empty());
    h.shutdown().await;
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_receiver_does_not_delay_another() {
    for bad in [Behaviour::Hang, Behaviour::Fail { retryable: true }] {
        let (a, b) = (Recorder::new(bad), Recorder::new(Behaviour::Accept));
        let (h, task) = start(CONFIG, &a, &b, None);
        let t0 = Instant::now();
        h.send(high(T0)).await;
        h.tick(T0);
        wait_for("the good receiver", Duration::from_secs(30), || {
            b.count() == 1
        })
        .await;
        let at = b.sent.lock()[0].0;
        assert!(at - t0 < Duration::from_secs(11), "{bad:?}: {:?}", at - t0);
        // The bad one is retried, then given up on, and tried again at a later flush.
        wait_for(
            "the bad receiver to give up",
            Duration::from_secs(60),
            || h.stats().receivers["a"].failed >= 1,
        )
        .await;
        let s = h.stats();
        assert_eq!(s.receivers["b"].sent, 1);
        assert_eq!(s.receivers["a"].sent, 0);
        if bad == Behaviour::Hang {
            // 4 attempts of 5s each, with backoff between them.
            assert_eq!(a.attempts.load(Ordering::SeqCst), 4);
        } else {
            assert!(s.receivers["a"].retried >= 3, "{:?}", s.receivers["a"]);
        }
        h.shutdown().await;
        task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_and_stop_on_non_retryable_errors() {
    let policy = options().retry;
    let n = Notification {
        receiver: "a".into(),
        group_key: "g".into(),
        group_labels: Default::default(),
        status: "firing".into(),
        alerts: Vec::new(),
        external_url: String::new(),
        sent_at_ms: 0,
        charts: Default::default(),
    };
    // Two retryable failures, then success: three attempts, waits within the jitter bounds
    // (200ms × 2^k, in its upper half).
    let r = Recorder::new(Behaviour::Accept);
    r.fail_first.store(2, Ordering::SeqCst);
    let t0 = Instant::now();
    let mut retries = Vec::new();
    deliver_with_retries(r.as_ref(), &n, &policy, |attempt, _| retries.push(attempt))
        .await
        .unwrap();
    let took = Instant::now() - t0;
    assert_eq!(r.attempts.load(Ordering::SeqCst), 3);
    assert_eq!(retries, vec![1, 2]);
    assert!(
        took >= Duration::from_millis(100 + 200) && took <= Duration::from_millis(200 + 400),
        "{took:?}"
    );
    // Non-retryable: one attempt.
    let r = Recorder::new(Behaviour::Fail { retryable: false });
    let err = deliver_with_retries(r.as_ref(), &n, &policy, |_, _| {})
        .await
        .unwrap_err();
    assert!(!err.retryable);
    assert_eq!(r.attempts.load(Ordering::SeqCst), 1);
    // Always retryable: stops at max_attempts.
    let r = Recorder::new(Behaviour::Fail { retryable: true });
    assert!(
        deliver_with_retries(r.as_ref(), &n, &policy, |_, _| {})
            .await
            .is_err()
    );
    assert_eq!(r.attempts.load(Ordering::SeqCst), 4);
    // Backoff doubles and is capped.
    for attempt in 1..10 {
        let base = Duration::from_millis(200 * (1 << (attempt - 1))).min(Duration::from_secs(2));
        let d = policy.backoff(attempt);
        assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_restart_in_the_middle_of_a_group_neither_duplicates_nor_drops() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        Recorder::new(Behaviour::Accept),
        Recorder::new(Behaviour::Accept),
    );
    // 1. The alert fires; the daemon stops before group_wait is over.
    let (h, task) = start(CONFIG, &a, &b, Some(dir.path().to_path_buf()));
    h.send(high(T0)).await;
    h.tick(T0);
    wait_for("firing", Duration::from_secs(5), || {
        h.stats().alerts_firing == 1
    })
    .await;
    h.shutdown().await;
    task.await.unwrap();
    assert_eq!(a.count(), 0, "stopped before group_wait");
    // 2. Restarted: the group is notified once, and not again before repeat_interval.
    let (h, task) = start(CONFIG, &a, &b, Some(dir.path().to_path_buf()));
    assert_eq!(h.alerts().await.unwrap().len(), 1, "restored");
    wait_for("notified after restart", Duration::from_secs(30), || {
        a.count() == 1 && b.count() == 1
    })
    .await;
    run_for(Duration::from_secs(300)).await;
    assert_eq!((a.count(), b.count()), (1, 1));
    h.shutdown().await;
    task.await.unwrap();
    // 3. Restarted again: already notified, so nothing is re-sent.
    let (h, task) = start(CONFIG, &a, &b, Some(dir.path().to_path_buf()));
    run_for(Duration::from_secs(600)).await;
    assert_eq!((a.count(), b.count()), (1, 1), "no duplicate after restart");
    // The resolution still gets through once.
    h.tick(T0 + 30 * MIN);
    wait_for("resolution", Duration::from_secs(120), || {
        a.count() == 2 && b.count() == 2
    })
    .await;
    assert_eq!(a.last().status, "resolved");
    run_for(Duration::from_secs(600)).await;
    assert_eq!((a.count(), b.count()), (2, 2));
    h.shutdown().await;
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_state_file_is_moved_aside_and_the_service_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(crate::state::FILE_NAME);
    std::fs::write(&path, b"not json").unwrap();
    let (a, b) = (
        Recorder::new(Behaviour::Accept),
        Recorder::new(Behaviour::Accept),
    );
    let (h, task) = start(CONFIG, &a, &b, Some(dir.path().to_path_buf()));
    assert!(h.alerts().await.unwrap().is_empty());
    let moved: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        std::fs::read(dir.path().join(&moved[0])).unwrap(),
        b"not json"
    );
    h.send(high(T0)).await;
    h.tick(T0);
    wait_for("notified", Duration::from_secs(30), || a.count() == 1).await;
    h.shutdown().await;
    task.await.unwrap();
    // A valid state replaced the corrupt one.
    assert!(
        crate::state::StateFile::in_dir(dir.path())
            .load()
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let (a, b) = (
        Recorder::new(Behaviour::Accept),
        Recorder::new(Behaviour::Accept),
    );
    let mut notifiers: BTreeMap<String, Arc<dyn Notifier>> = BTreeMap::new();
    notifiers.insert("a".into(), a as Arc<dyn Notifier>);
    notifiers.insert("b".into(), b as Arc<dyn Notifier>);
    let ctx: Arc<dyn ModelContext> = Arc::new(FixedForecast { peak: 1.0 });
    let opts = ServiceOptions {
        queue_capacity: 1,
        ..options()
    };
    let (h, task) = AlertingService::spawn_with_options(
        &config(CONFIG),
        notifiers,
        ctx,
        None,
        wall_clock(),
        opts,
    )
    .unwrap();
    // The current-thread runtime does not run the service until this test yields.
    assert!(h.try_send(high(T0)));
    assert!(!h.try_send(high(T0)));
    assert!(!h.try_send(high(T0)));
    let s = h.stats();
    assert_eq!((s.signals_received, s.signals_dropped), (3, 2));
    // A tick never blocks, even with the queue full, and is evaluated once it drains.
    h.tick(T0);
    wait_for("evaluated", Duration::from_secs(5), || {
        h.stats().alerts_firing == 1
    })
    .await;
    h.shutdown().await;
    task.await.unwrap();
}
