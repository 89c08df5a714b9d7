//! The alerting service: one task that owns the pipeline, and a cheap handle to talk to it.
//!
//! The forecaster sends signals ([`AlertingHandle::send`]) and advances event time
//! ([`AlertingHandle::tick`]); the task evaluates rules, groups firing alerts, and at each
//! group's deadline (wall clock; the task sleeps until the next one, it does not poll) mutes,
//! deduplicates against the notification log and delivers. Each (group, receiver) delivery runs
//! in its own task with retries, so a slow or failing receiver never delays the others. State
//! (alerts, silences, notification log) is saved to the state directory: at once after
//! deliveries and silence changes, and within [`ServiceOptions::save_debounce`] after alert
//! changes.
//!
//! Signal intake is bounded ([`ServiceOptions::queue_capacity`] batches). [`AlertingHandle::send`]
//! waits up to [`ServiceOptions::send_timeout`] for room, then drops the batch;
//! [`AlertingHandle::try_send`] drops at once. Dropped signals are counted
//! (`signals_dropped`). Ticks never block and are never lost: when the queue is full, the
//! latest tick is kept aside and evaluated as soon as the queue drains.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use presage_config::ForecasterConfig;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::alert::{Alert, AlertState, Notification};
use crate::dispatch::{Dispatcher, Planned, Routes};
use crate::error::{Error, Result};
use crate::inhibit::Inhibitor;
use crate::lifecycle::Evaluator;
use crate::nflog::{Entry, NotificationLog};
use crate::notify::{Notifier, NotifyError};
use crate::signal::{LabelSet, ModelContext, Signal};
use crate::silence::{Silence, SilenceSpec, Silences};
use crate::state::StateFile;

/// Retries of one delivery: exponential backoff with jitter, bounded in attempts and time.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Wait before the second attempt.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Most attempts.
    pub max_attempts: u32,
    /// No attempt starts after this long since the first.
    pub max_elapsed: Duration,
    /// One attempt is abandoned (and counts as a retryable failure) after this long.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_attempts: 8,
            max_elapsed: Duration::from_secs(120),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based): `initial × 2^(attempt-1)`, capped at
    /// `max_backoff`, then a uniformly random point in its upper half ("equal jitter"), so
    /// receivers that failed together do not retry together.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let half = base / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Tuning of the service (the configuration covers what users set).
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Signal batches queued at most.
    pub queue_capacity: usize,
    /// How long [`AlertingHandle::send`] waits for room before dropping a batch.
    pub send_timeout: Duration,
    /// Delivery retries.
    pub retry: RetryPolicy,
    /// Alert changes are saved at most this long after they happen.
    pub save_debounce: Duration,
    /// Charts attached to one notification at most.
    pub max_charts: usize,
    /// Fire-to-notify latency samples kept (the most recent).
    pub latency_samples: usize,
    /// How long shutdown waits for deliveries in flight.
    pub shutdown_grace: Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            send_timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            save_debounce: Duration::from_secs(2),
            max_charts: 3,
            latency_samples: 4096,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// An alert as the API shows it: the alert, whether it is muted and by what, and where it
/// goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEntry {
    /// The alert.
    #[serde(flatten)]
    pub alert: Alert,
    /// Ids of the active silences that mute it.
    pub silenced_by: Vec<String>,
    /// Fingerprints of the firing alerts that inhibit it.
    pub inhibited_by: Vec<String>,
    /// Receivers its routes send it to.
    pub receivers: Vec<String>,
}

impl AlertEntry {
    /// Silenced or inhibited.
    pub fn muted(&self) -> bool {
        !self.silenced_by.is_empty() || !self.inhibited_by.is_empty()
    }
}

/// Delivery counters of one receiver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReceiverStats {
    /// The notifier's kind.
    pub kind: String,
    /// Notifications delivered.
    pub sent: u64,
    /// Notifications given up on.
    pub failed: u64,
    /// Attempts retried.
    pub retried: u64,
}

/// Counters and gauges of the service.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Signals handed to the service.
    pub signals_received: u64,
    /// Signals dropped because the queue stayed full (or the service stopped).
    pub signals_dropped: u64,
    /// Rule evaluations run.
    pub evaluations: u64,
    /// Alerts pending.
    pub alerts_pending: u64,
    /// Alerts firing.
    pub alerts_firing: u64,
    /// Alerts resolved and still kept.
    pub alerts_resolved: u64,
    /// Firing alerts muted by a silence.
    pub alerts_silenced: u64,
    /// Firing alerts muted by an inhibition.
    pub alerts_inhibited: u64,
    /// (rule, series) pairs refused because `alerting.max_alerts` was reached.
    pub alerts_refused: u64,
    /// Notification groups.
    pub groups: u64,
    /// Silences kept (any state).
    pub silences: u64,
    /// Deliveries by receiver.
    pub receivers: BTreeMap<String, ReceiverStats>,
    /// Wall time from receiving the signal that made an alert fire to the first notification
    /// carrying it leaving, in seconds: the most recent samples, oldest first.
    pub fire_to_notify_seconds: Vec<f64>,
    /// State saves that failed.
    pub state_save_errors: u64,
}

impl Stats {
    /// A quantile (0–1) of the fire-to-notify latency samples, in seconds.
    pub fn latency_quantile(&self, q: f64) -> Option<f64> {
        if self.fire_to_notify_seconds.is_empty() {
            return None;
        }
        let mut v = self.fire_to_notify_seconds.clone();
        v.sort_by(f64::total_cmp);
        let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        v.get(i).copied()
    }
}

type WallClock = Arc<dyn Fn() -> i64 + Send + Sync>;

struct Shared {
    silences: Mutex<Silences>,
    stats: Mutex<Stats>,
    received: AtomicU64,
    dropped: AtomicU64,
    pending_tick: AtomicI64,
    wall: WallClock,
    latency_cap: usize,
}

enum Input {
    Signals(Vec<Signal>, i64),
    Tick(i64),
}

enum Control {
    Alerts(oneshot::Sender<Vec<AlertEntry>>),
    SilencesChanged,
    Shutdown(oneshot::Sender<()>),
}

struct Done {
    group_key: String,
    receiver: String,
    firing: std::collections::BTreeSet<String>,
    resolved: std::collections::BTreeSet<String>,
    ok: bool,
    at_ms: i64,
}

/// A cheap, cloneable handle to the service.
#[derive(Clone)]
pub struct AlertingHandle {
    input: mpsc::Sender<Input>,
    control: mpsc::UnboundedSender<Control>,
    shared: Arc<Shared>,
    send_timeout: Duration,
}

impl std::fmt::Debug for AlertingHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertingHandle").finish_non_exhaustive()
    }
}

impl AlertingHandle {
    fn count_drop(&self, n: usize) {
        self.shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Hands signals to the service, waiting up to the send timeout for room in the queue.
    /// Returns `false` (and counts the signals as dropped) when they could not be queued.
    pub async fn send(&self, signals: Vec<Signal>) -> bool {
        if signals.is_empty() {
            return true;
        }
        let n = signals.len();
        self.shared.received.fetch_add(n as u64, Ordering::Relaxed);
        let input = Input::Signals(signals, (self.shared.wall)());
        match tokio::time::timeout(self.send_timeout, self.input.send(input)).await {
            Ok(Ok(())) => true,
            _ => {
                self.count_drop(n);
                false
            }
        }
    }

    /// Hands signals to the service without waiting: when the queue is full they are dropped
    /// (and counted) and `false` is returned.
    pub fn try_send(&self, signals: Vec<Signal>) -> bool {
        if signals.is_empty() {
            return true;
        }
        let n = signals.len();
        self.shared.received.fetch_add(n as u64, Ordering::Relaxed);
        match self
            .input
            .try_send(Input::Signals(signals, (self.shared.wall)()))
        {
            Ok(()) => true,
            Err(_) => {
                self.count_drop(n);
                false
            }
        }
    }

    /// Event time advanced to `event_now_ms`: evaluate the rules (after the signals sent
    /// before). Never blocks.
    pub fn tick(&self, event_now_ms: i64) {
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.input.try_send(Input::Tick(event_now_ms))
        {
            self.shared
                .pending_tick
                .fetch_max(event_now_ms, Ordering::AcqRel);
        }
    }

    /// Active and recently resolved alerts, firing first, with their mute status.
    pub async fn alerts(&self) -> Result<Vec<AlertEntry>> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Alerts(tx))
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Every silence kept (active, pending and recently expired), newest first. Use
    /// [`Silence::to_api_json`] with [`AlertingHandle::wall_now_ms`] for the API's shape.
    pub fn silences(&self) -> Vec<Silence> {
        self.shared.silences.lock().list()
    }

    /// One silence.
    pub fn silence(&self, id: &str) -> Option<Silence> {
        self.shared.silences.lock().get(id).cloned()
    }

    /// Creates (or, with an existing `id`, replaces) a silence; returns its id.
    pub fn create_silence(&self, spec: &SilenceSpec) -> Result<String> {
        let now = (self.shared.wall)();
        let id = self.shared.silences.lock().create(spec, now)?;
        let _ = self.control.send(Control::SilencesChanged);
        Ok(id)
    }

    /// Expires a silence now.
    pub fn expire_silence(&self, id: &str) -> Result<()> {
        let now = (self.shared.wall)();
        self.shared.silences.lock().expire(id, now)?;
        let _ = self.control.send(Control::SilencesChanged);
        Ok(())
    }

    /// The service's wall clock (ms since the epoch).
    pub fn wall_now_ms(&self) -> i64 {
        (self.shared.wall)()
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let mut s = self.shared.stats.lock().clone();
        s.signals_received = self.shared.received.load(Ordering::Relaxed);
        s.signals_dropped = self.shared.dropped.load(Ordering::Relaxed);
        s.silences = self.shared.silences.lock().len() as u64;
        s
    }

    /// Stops the service: deliveries in flight get a short grace, the state is saved. Returns
    /// once the service has stopped (or had already).
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// The service.
#[derive(Debug)]
pub struct AlertingService;

impl AlertingService {
    /// Starts the service with the default [`ServiceOptions`]. `notifiers` maps receiver names
    /// to notifiers; `context` gives charts and forecasts; `state_dir` holds the state file
    /// (`None` keeps state in memory only); `wall_clock` returns wall time in ms since the
    /// epoch. Must be called inside a Tokio runtime.
    pub fn spawn(
        config: &ForecasterConfig,
        notifiers: BTreeMap<String, Arc<dyn Notifier>>,
        context: Arc<dyn ModelContext>,
        state_dir: Option<PathBuf>,
        wall_clock: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> Result<(AlertingHandle, JoinHandle<()>)> {
        Self::spawn_with_options(
            config,
            notifiers,
            context,
            state_dir,
            wall_clock,
            ServiceOptions::default(),
        )
    }

    /// Starts the service with explicit options.
    pub fn spawn_with_options(
        config: &ForecasterConfig,
        notifiers: BTreeMap<String, Arc<dyn Notifier>>,
        context: Arc<dyn ModelContext>,
        state_dir: Option<PathBuf>,
        wall_clock: impl Fn() -> i64 + Send + Sync + 'static,
        options: ServiceOptions,
    ) -> Result<(AlertingHandle, JoinHandle<()>)> {
        let wall: WallClock = Arc::new(wall_clock);
        let mut evaluator = Evaluator::from_config(config, Some(Arc::clone(&context)))?;
        let mut dispatcher = Dispatcher::new(Routes::from_config(config)?);
        let inhibitor = Inhibitor::new(&config.inhibit)?;
        let state_file = state_dir.map(|d| StateFile::in_dir(&d));
        let mut silences = Silences::new();
        let mut nflog = NotificationLog::new();
        let now = wall();
        if let Some(file) = &state_file {
            match file.load() {
                Ok(Some(state)) => {
                    let n = evaluator.restore(state.alerts);
                    silences = state.silences;
                    nflog = state.nflog;
                    for (a, _) in evaluator.alerts() {
                        dispatcher.add_restored(a, now, &nflog);
                    }
                    tracing::info!(path = %file.path().display(), alerts = n, silences = silences.len(), "alerting state restored");
                }
                Ok(None) => {}
                Err(e @ Error::StateCorrupt { .. }) => {
                    let moved = file.quarantine(now);
                    tracing::warn!(error = %e, moved_to = ?moved.ok(), "alerting state refused; starting with empty state");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "alerting state unreadable; starting with empty state");
                }
            }
        }
        let mut stats = Stats::default();
        for (name, n) in &notifiers {
            stats.receivers.insert(
                name.clone(),
                ReceiverStats {
                    kind: n.kind().to_string(),
                    ..ReceiverStats::default()
                },
            );
        }
        let shared = Arc::new(Shared {
            silences: Mutex::new(silences),
            stats: Mutex::new(stats),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            pending_tick: AtomicI64::new(i64::MIN),
            wall,
            latency_cap: options.latency_samples.max(1),
        });
        let (input_tx, input_rx) = mpsc::channel(options.queue_capacity.max(1));
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let handle = AlertingHandle {
            input: input_tx,
            control: control_tx,
            shared: Arc::clone(&shared),
            send_timeout: options.send_timeout,
        };
        let core = Core {
            evaluator,
            dispatcher,
            inhibitor,
            nflog,
            shared,
            state_file,
            notifiers,
            context,
            in_flight: HashSet::new(),
            done_tx,
            external_url: config.alerting.external_url.clone(),
            options,
            save_due: None,
            save_now: false,
        };
        let task = tokio::spawn(core.run(input_rx, control_rx, done_rx));
        Ok((handle, task))
    }
}

struct Core {
    evaluator: Evaluator,
    dispatcher: Dispatcher,
    inhibitor: Inhibitor,
    nflog: NotificationLog,
    shared: Arc<Shared>,
    state_file: Option<StateFile>,
    notifiers: BTreeMap<String, Arc<dyn Notifier>>,
    context: Arc<dyn ModelContext>,
    in_flight: HashSet<(String, String)>,
    done_tx: mpsc::UnboundedSender<Done>,
    external_url: String,
    options: ServiceOptions,
    save_due: Option<i64>,
    save_now: bool,
}

impl Core {
    fn wall(&self) -> i64 {
        (self.shared.wall)()
    }

    fn instant_at(&self, wall_ms: i64) -> Instant {
        let wait = (wall_ms - self.wall()).max(0) as u64;
        Instant::now() + Duration::from_millis(wait)
    }

    async fn run(
        mut self,
        mut input: mpsc::Receiver<Input>,
        mut control: mpsc::UnboundedReceiver<Control>,
        mut done: mpsc::UnboundedReceiver<Done>,
    ) {
        let mut shutdown_reply = None;
        loop {
            let deadline = [self.dispatcher.next_deadline(), self.save_due]
                .into_iter()
                .flatten()
                .min();
            let sleep_until = deadline.map(|d| self.instant_at(d));
            tokio::select! {
                biased;
                c = control.recv() => match c {
                    Some(Control::Alerts(tx)) => { let _ = tx.send(self.alert_entries()); }
                    Some(Control::SilencesChanged) => self.save_now = true,
                    Some(Control::Shutdown(tx)) => { shutdown_reply = Some(tx); break; }
                    None => break,
                },
                Some(d) = done.recv() => self.on_done(d),
                i = input.recv() => match i {
                    Some(Input::Signals(signals, at)) => self.evaluator.ingest(&signals, at),
                    Some(Input::Tick(t)) => self.evaluate(t),
                    None => break,
                },
                _ = tokio::time::sleep_until(sleep_until.unwrap_or_else(Instant::now)), if sleep_until.is_some() => {}
            }
            // Deliveries that finished meanwhile: log them before anything else.
            while let Ok(d) = done.try_recv() {
                self.on_done(d);
            }
            if input.is_empty() {
                let pending = self.shared.pending_tick.swap(i64::MIN, Ordering::AcqRel);
                if pending != i64::MIN {
                    self.evaluate(pending);
                } else if self.evaluator.has_late() {
                    // Steps that waited for a fit arrive after event time moved past them,
                    // and no tick may follow: evaluate them now.
                    self.evaluate(self.evaluator.now_ms());
                }
            }
            self.flush_due();
            self.maybe_save().await;
        }
        // Shutdown: let deliveries in flight finish (briefly) so they are logged.
        let grace = Instant::now() + self.options.shutdown_grace;
        while !self.in_flight.is_empty() {
            match tokio::time::timeout_at(grace, done.recv()).await {
                Ok(Some(d)) => self.on_done(d),
                _ => break,
            }
        }
        self.save_now = true;
        self.maybe_save().await;
        if let Some(tx) = shutdown_reply {
            let _ = tx.send(());
        }
    }

    fn evaluate(&mut self, event_now_ms: i64) {
        let out = self.evaluator.evaluate(event_now_ms);
        if !out.ran {
            return;
        }
        let now = self.wall();
        for fp in &out.fired {
            if let Some((a, _)) = self.evaluator.alert(fp) {
                self.dispatcher.add(a, now);
            }
        }
        if out.changed > 0 {
            self.save_due
                .get_or_insert(now + self.options.save_debounce.as_millis() as i64);
        }
        self.update_gauges(now);
    }

    fn update_gauges(&self, now: i64) {
        let (mut pending, mut firing, mut resolved, mut silenced) = (0, 0, 0, 0);
        let silences = self.shared.silences.lock();
        for (a, _) in self.evaluator.alerts() {
            match a.state {
                AlertState::Pending => pending += 1,
                AlertState::Firing => {
                    firing += 1;
                    if !silences.muting(&a.labels, now).is_empty() {
                        silenced += 1;
                    }
                }
                AlertState::Resolved => resolved += 1,
            }
        }
        drop(silences);
        let inhibited = self
            .inhibitor
            .inhibited(self.evaluator.alerts().map(|(a, _)| a))
            .len() as u64;
        let mut s = self.shared.stats.lock();
        s.evaluations += 1;
        s.alerts_pending = pending;
        s.alerts_firing = firing;
        s.alerts_resolved = resolved;
        s.alerts_silenced = silenced;
        s.alerts_inhibited = inhibited;
        s.alerts_refused = self.evaluator.refused();
        s.groups = self.dispatcher.groups().count() as u64;
    }

    fn alert_entries(&self) -> Vec<AlertEntry> {
        let now = self.wall();
        let inhibited = self
            .inhibitor
            .inhibited(self.evaluator.alerts().map(|(a, _)| a));
        let silences = self.shared.silences.lock();
        let mut out: Vec<AlertEntry> = self
            .evaluator
            .alerts()
            .map(|(a, _)| {
                let mut receivers: Vec<String> = self
                    .dispatcher
                    .routes()
                    .matching(&a.labels)
                    .iter()
                    .flat_map(|r| r.receivers.iter().cloned())
                    .collect();
                receivers.sort();
                receivers.dedup();
                AlertEntry {
                    alert: a.clone(),
                    silenced_by: silences.muting(&a.labels, now),
                    inhibited_by: inhibited.get(&a.fingerprint).cloned().unwrap_or_default(),
                    receivers,
                }
            })
            .collect();
        let rank = |s: AlertState| match s {
            AlertState::Firing => 0,
            AlertState::Pending => 1,
            AlertState::Resolved => 2,
        };
        out.sort_by(|a, b| {
            rank(a.alert.state)
                .cmp(&rank(b.alert.state))
                .then_with(|| a.alert.fingerprint.cmp(&b.alert.fingerprint))
        });
        out
    }

    fn flush_due(&mut self) {
        let now = self.wall();
        let due = self.dispatcher.due(now);
        if due.is_empty() {
            return;
        }
        let Core {
            evaluator,
            dispatcher,
            inhibitor,
            nflog,
            shared,
            in_flight,
            ..
        } = self;
        let inhibited = inhibitor.inhibited(evaluator.alerts().map(|(a, _)| a));
        let mut planned = Vec::new();
        {
            let silences = shared.silences.lock();
            for key in due {
                planned.extend(dispatcher.flush(
                    &key,
                    now,
                    |fp| evaluator.alert(fp).map(|(a, _)| a),
                    |a| {
                        inhibited.contains_key(&a.fingerprint)
                            || !silences.muting(&a.labels, now).is_empty()
                    },
                    nflog,
                    |g, r| in_flight.contains(&(g.to_string(), r.to_string())),
                ));
            }
        }
        for p in planned {
            self.start_delivery(p, now);
        }
    }

    fn start_delivery(&mut self, p: Planned, now: i64) {
        if !p.deliver {
            self.nflog.record(
                &p.group_key,
                &p.receiver,
                Entry {
                    firing: p.firing,
                    resolved: p.resolved,
                    sent_at_ms: now,
                },
            );
            self.save_now = true;
            return;
        }
        let Some(notifier) = self.notifiers.get(&p.receiver).cloned() else {
            tracing::warn!(receiver = %p.receiver, "no notifier for receiver; notification dropped");
            self.shared
                .stats
                .lock()
                .receivers
                .entry(p.receiver.clone())
                .or_default()
                .failed += 1;
            return;
        };
        let charts: Vec<(String, Arc<LabelSet>)> = p
            .alerts
            .iter()
            .filter(|a| a.state == AlertState::Firing)
            .filter_map(|a| {
                self.evaluator
                    .alert(&a.fingerprint)
                    .map(|(_, s)| (a.fingerprint.clone(), Arc::clone(s)))
            })
            .take(self.options.max_charts)
            .collect();
        let status = if p.alerts.iter().any(|a| a.state == AlertState::Firing) {
            "firing"
        } else {
            "resolved"
        };
        let notification = Notification {
            receiver: p.receiver.clone(),
            group_key: p.group_key.clone(),
            group_labels: p.group_labels,
            status: status.to_string(),
            alerts: p.alerts,
            external_url: self.external_url.clone(),
            sent_at_ms: now,
            charts: BTreeMap::new(),
        };
        self.in_flight
            .insert((p.group_key.clone(), p.receiver.clone()));
        let job = Delivery {
            notifier,
            notification,
            charts,
            context: Arc::clone(&self.context),
            event_now_ms: self.evaluator.now_ms(),
            policy: self.options.retry.clone(),
            shared: Arc::clone(&self.shared),
            done: self.done_tx.clone(),
            firing: p.firing,
            resolved: p.resolved,
        };
        tokio::spawn(job.run());
    }

    fn on_done(&mut self, d: Done) {
        self.in_flight
            .remove(&(d.group_key.clone(), d.receiver.clone()));
        if !d.ok {
            return;
        }
        let before: std::collections::BTreeSet<String> = self
            .nflog
            .get(&d.group_key, &d.receiver)
            .map(|e| e.firing.clone())
            .unwrap_or_default();
        let mut latencies = Vec::new();
        for fp in d.firing.difference(&before) {
            if let Some(cause) = self.evaluator.take_cause_wall_ms(fp) {
                latencies.push((d.at_ms - cause).max(0) as f64 / 1000.0);
            }
        }
        self.nflog.record(
            &d.group_key,
            &d.receiver,
            Entry {
                firing: d.firing,
                resolved: d.resolved,
                sent_at_ms: d.at_ms,
            },
        );
        self.save_now = true;
        if !latencies.is_empty() {
            let mut s = self.shared.stats.lock();
            s.fire_to_notify_seconds.extend(latencies);
            let cap = self.shared.latency_cap;
            let len = s.fire_to_notify_seconds.len();
            if len > cap {
                s.fire_to_notify_seconds.drain(..len - cap);
            }
        }
    }

    async fn maybe_save(&mut self) {
        let now = self.wall();
        let due = self.save_now || self.save_due.is_some_and(|d| d <= now);
        if !due {
            return;
        }
        self.save_now = false;
        self.save_due = None;
        self.nflog.gc(now);
        let bytes = {
            let mut silences = self.shared.silences.lock();
            silences.gc(now);
            let Some(_) = &self.state_file else { return };
            StateFile::encode_parts(now, &self.evaluator.snapshot(), &silences, &self.nflog)
        };
        let Some(file) = self.state_file.clone() else {
            return;
        };
        let result = match bytes {
            Ok(bytes) => tokio::task::spawn_blocking(move || file.save_bytes(&bytes))
                .await
                .unwrap_or_else(|e| {
                    Err(Error::StateIo {
                        path: String::new(),
                        source: std::io::Error::other(e.to_string()),
                    })
                }),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "saving alerting state failed");
            self.shared.stats.lock().state_save_errors += 1;
        }
    }
}

struct Delivery {
    notifier: Arc<dyn Notifier>,
    notification: Notification,
    charts: Vec<(String, Arc<LabelSet>)>,
    context: Arc<dyn ModelContext>,
    event_now_ms: i64,
    policy: RetryPolicy,
    shared: Arc<Shared>,
    done: mpsc::UnboundedSender<Done>,
    firing: std::collections::BTreeSet<String>,
    resolved: std::collections::BTreeSet<String>,
}

impl Delivery {
    async fn run(mut self) {
        if !self.charts.is_empty() {
            let context = Arc::clone(&self.context);
            let charts = std::mem::take(&mut self.charts);
            let now = self.event_now_ms;
            let built = tokio::task::spawn_blocking(move || {
                charts
                    .into_iter()
                    .filter_map(|(fp, s)| context.chart(&s, now).map(|c| (fp, c)))
                    .collect::<BTreeMap<_, _>>()
            })
            .await;
            let mut charts = built.unwrap_or_default();
            // The rule's threshold, drawn as a line on the alert's chart.
            for a in &self.notification.alerts {
                if let (Some(chart), Some(t)) =
                    (charts.get_mut(&a.fingerprint), a.explanation.threshold)
                {
                    chart.threshold = Some(t);
                }
            }
            self.notification.charts = charts;
        }
        let receiver = self.notification.receiver.clone();
        let result = deliver_with_retries(
            self.notifier.as_ref(),
            &self.notification,
            &self.policy,
            |_attempt, _err| {
                self.shared
                    .stats
                    .lock()
                    .receivers
                    .entry(receiver.clone())
                    .or_default()
                    .retried += 1;
            },
        )
        .await;
        let ok = match &result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(receiver = %receiver, group = %self.notification.group_key, error = %e.message, "notification failed");
                false
            }
        };
        {
            let mut s = self.shared.stats.lock();
            let r = s.receivers.entry(receiver.clone()).or_default();
            if ok {
                r.sent += 1;
            } else {
                r.failed += 1;
            }
        }
        let _ = self.done.send(Done {
            group_key: self.notification.group_key.clone(),
            receiver,
            firing: self.firing,
            resolved: self.resolved,
            ok,
            at_ms: (self.shared.wall)(),
        });
    }
}

/// Delivers with retries: retryable failures (and attempts that time out) are tried again
/// after [`RetryPolicy::backoff`], until `max_attempts` or `max_elapsed`; a non-retryable
/// failure stops at once. `on_retry(attempt, error)` is called before each retry.
pub async fn deliver_with_retries(
    notifier: &dyn Notifier,
    notification: &Notification,
    policy: &RetryPolicy,
    mut on_retry: impl FnMut(u32, &NotifyError),
) -> std::result::Result<(), NotifyError> {
    let start = Instant::now();
    let mut attempt = 1;
    loop {
        let err = match tokio::time::timeout(policy.attempt_timeout, notifier.notify(notification))
            .await
        {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => NotifyError {
                retryable: true,
                message: format!(
                    "attempt timed out after {}",
                    crate::template::duration_secs(policy.attempt_timeout.as_secs_f64())
                ),
            },
        };
        if !err.retryable || attempt >= policy.max_attempts {
            return Err(err);
        }
        let wait = policy.backoff(attempt);
        if start.elapsed() + wait > policy.max_elapsed {
            return Err(err);
        }
        on_retry(attempt, &err);
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}
