//! The exporter: one task that sends batches to the forecaster strictly in order.
//!
//! Batches arrive serialized on a bounded channel (producers wait when it is full). While the
//! forecaster answers, a batch goes straight out and never touches the disk. The first batch
//! that cannot be delivered, and every batch after it, goes to the on-disk [`spool::Spool`];
//! the exporter retries the spool's oldest batch with exponential backoff and jitter, and
//! replays the spool in order once the forecaster is back, before anything newer — so series
//! stay in time order and log lines arrive once each. A log batch's checkpoints are applied
//! only when the forecaster has acknowledged it.

pub(crate) mod spool;
pub(crate) mod transport;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::logs::checkpoint::{Checkpoint, CheckpointStore};
use crate::telemetry::Telemetry;
use spool::{Dropped, Spool};
use transport::{Outcome, Transport};

/// What a batch carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Signal {
    /// An `ExportMetricsServiceRequest`.
    Metrics,
    /// An `ExportLogsServiceRequest`.
    Logs,
}

/// One serialized export request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Batch {
    /// Metrics or logs.
    pub(crate) signal: Signal,
    /// The serialized request.
    pub(crate) payload: Bytes,
    /// Data points or log records in it.
    pub(crate) items: u64,
    /// Log file positions reached once this batch is acknowledged.
    pub(crate) checkpoints: Vec<Checkpoint>,
}

/// Exponential backoff with "equal jitter": each wait is between half and the whole of the
/// current backoff, which doubles up to the maximum.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    state: u64,
}

impl Backoff {
    /// Starts at `initial`, doubles up to `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        Self {
            initial,
            max,
            current: initial,
            state: seed | 1,
        }
    }

    fn random_unit(&mut self) -> f64 {
        // xorshift64*: plenty for jitter.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (r >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next wait.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let wait = self.current.mul_f64(0.5 + 0.5 * self.random_unit());
        self.current = (self.current * 2).min(self.max);
        wait
    }

    /// Back to the initial wait (after a success).
    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }
}

enum Head {
    Fresh(Batch),
    Spooled(u64, Batch),
}

impl Head {
    fn batch(&self) -> &Batch {
        match self {
            Head::Fresh(b) | Head::Spooled(_, b) => b,
        }
    }
}

/// The exporter task's state.
pub(crate) struct Exporter {
    transport: Transport,
    spool: Spool,
    checkpoints: Arc<Mutex<CheckpointStore>>,
    tel: Arc<Telemetry>,
    backoff: Backoff,
    grace: Duration,
    failing_since: Option<Instant>,
    /// The forecaster refused the token since the last accepted batch (logged once).
    unauthorized: bool,
}

impl Exporter {
    /// An exporter; `grace` bounds how long it keeps sending after shutdown is requested.
    pub(crate) fn new(
        transport: Transport,
        spool: Spool,
        checkpoints: Arc<Mutex<CheckpointStore>>,
        tel: Arc<Telemetry>,
        backoff: Backoff,
        grace: Duration,
    ) -> Self {
        let me = Self {
            transport,
            spool,
            checkpoints,
            tel,
            backoff,
            grace,
            failing_since: None,
            unauthorized: false,
        };
        me.gauges();
        me
    }

    fn gauges(&self) {
        self.tel.spool_bytes.set(self.spool.bytes());
        self.tel.spool_batches.set(self.spool.len() as u64);
    }

    fn count_dropped(&self, d: Dropped) {
        if d.batches > 0 {
            self.tel.batches_dropped_spool_full.add(d.batches);
            self.tel.items_dropped_spool_full.add(d.items);
            tracing::warn!(
                batches = d.batches,
                items = d.items,
                "spool full: the oldest batches were dropped (agent.spool_max_size)"
            );
        }
    }

    fn spool_push(&mut self, batch: &Batch) {
        match self.spool.push(batch) {
            Ok(d) => {
                self.tel.batches_spooled.add(1);
                self.count_dropped(d);
            }
            Err(e) => {
                self.tel.batches_dropped_io.add(1);
                tracing::error!(error = %e, "cannot write to the spool; batch dropped");
            }
        }
        self.gauges();
    }

    /// Moves every batch waiting on the channel into the spool.
    fn spool_waiting(&mut self, rx: &mut mpsc::Receiver<Batch>) {
        while let Ok(b) = rx.try_recv() {
            self.spool_push(&b);
        }
    }

    fn done(&mut self, head: Head) {
        let batch = head.batch();
        if !batch.checkpoints.is_empty() {
            match self.checkpoints.lock() {
                Ok(mut store) => {
                    if let Err(e) = store.apply(&batch.checkpoints) {
                        tracing::error!(error = %e, "cannot save log checkpoints");
                    }
                }
                Err(_) => tracing::error!("checkpoint store poisoned; positions not saved"),
            }
        }
        if let Head::Spooled(seq, _) = head
            && let Err(e) = self.spool.remove(seq)
        {
            tracing::warn!(error = %e, "cannot delete a sent spool file");
        }
        self.gauges();
    }

    /// Runs until the channel closes (every producer stopped) or, after `shutdown`, the grace
    /// period ends; whatever is left is in the spool for the next start.
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Batch>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut give_up = false;
        loop {
            if deadline.is_none() && *shutdown.borrow() {
                deadline = Some(tokio::time::Instant::now() + self.grace);
            }
            let stopping = deadline.is_some();
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                self.spool_waiting(&mut rx);
                break;
            }
            // Once stopping with a backlog (or an unreachable forecaster), everything still
            // arriving goes to the spool for the next start.
            if stopping && (give_up || !self.spool.is_empty()) {
                let until = deadline.unwrap_or_else(tokio::time::Instant::now);
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(b)) => {
                        self.spool_push(&b);
                        continue;
                    }
                    Ok(None) | Err(_) => {
                        self.spool_waiting(&mut rx);
                        break;
                    }
                }
            }
            // Keep producers from waiting on a full channel while a backlog replays.
            if !self.spool.is_empty() && rx.len() * 2 > rx.max_capacity() {
                self.spool_waiting(&mut rx);
            }
            let head = if stopping {
                None
            } else {
                let (front, dropped) = self.spool.front();
                if dropped.batches > 0 {
                    self.tel.batches_dropped_io.add(dropped.batches);
                }
                front.map(|(seq, b)| Head::Spooled(seq, b))
            };
            let head = match head {
                Some(h) => h,
                None => {
                    let wait_shutdown = async {
                        if stopping {
                            std::future::pending::<()>().await;
                        }
                        let _ = shutdown.changed().await;
                    };
                    tokio::select! {
                        b = rx.recv() => match b {
                            Some(b) => Head::Fresh(b),
                            None => break,
                        },
                        () = wait_shutdown => continue,
                    }
                }
            };
            let batch = head.batch();
            let outcome = self.transport.send(batch.signal, &batch.payload).await;
            if let Outcome::Unauthorized(msg, _) = &outcome
                && !self.unauthorized
            {
                self.unauthorized = true;
                tracing::error!(
                    error = %msg,
                    "the forecaster refused the agent's token: set agent.token_file to a file \
                     holding one of the forecaster's auth.ingest_token_file tokens; data is \
                     spooled and retried with backoff"
                );
            }
            match outcome {
                Outcome::Accepted { rejected, message } => {
                    let counters = self.tel.signal(batch.signal);
                    counters.batches_sent.add(1);
                    counters.items_sent.add(batch.items);
                    if rejected > 0 {
                        counters.items_rejected.add(rejected.unsigned_abs());
                        tracing::warn!(
                            signal = ?batch.signal,
                            rejected,
                            of = batch.items,
                            %message,
                            "the forecaster accepted the batch but rejected some of it"
                        );
                    }
                    if let Some(since) = self.failing_since.take() {
                        tracing::info!(
                            after = %humantime::format_duration(Duration::from_secs(since.elapsed().as_secs())),
                            spooled = self.spool.len().saturating_sub(usize::from(matches!(head, Head::Spooled(..)))),
                            "the forecaster is reachable again; replaying the spool"
                        );
                    }
                    self.backoff.reset();
                    self.unauthorized = false;
                    self.done(head);
                }
                Outcome::Refused(msg) => {
                    self.tel.batches_dropped_rejected.add(1);
                    self.tel.items_dropped_rejected.add(batch.items);
                    tracing::error!(signal = ?batch.signal, items = batch.items, error = %msg, "the forecaster refused a batch; it is dropped");
                    // The lines are not re-read: retrying cannot succeed.
                    self.done(head);
                }
                Outcome::Retry(msg, after) | Outcome::Unauthorized(msg, after) => {
                    self.tel.retries.add(1);
                    if self.failing_since.is_none() {
                        self.failing_since = Some(Instant::now());
                        tracing::warn!(error = %msg, "cannot deliver to the forecaster; spooling and retrying");
                    } else {
                        tracing::debug!(error = %msg, "export retry failed");
                    }
                    if let Head::Fresh(b) = head {
                        self.spool_push(&b);
                    }
                    if stopping {
                        give_up = true;
                        continue;
                    }
                    let wait = self.backoff.next_delay().max(after.unwrap_or_default());
                    let sleep = tokio::time::sleep(wait);
                    tokio::pin!(sleep);
                    loop {
                        tokio::select! {
                            () = &mut sleep => break,
                            b = rx.recv() => match b {
                                Some(b) => self.spool_push(&b),
                                None => break,
                            },
                            changed = shutdown.changed() => {
                                if changed.is_err() || *shutdown.borrow() {
                                    give_up = true;
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
        self.gauges();
        tracing::debug!(spooled = self.spool.len(), "exporter stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut nominal = Duration::from_millis(100);
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(d >= nominal / 2, "{d:?} < half of {nominal:?}");
            assert!(d <= nominal, "{d:?} > {nominal:?}");
            nominal = (nominal * 2).min(Duration::from_secs(1));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(10));
        let delays: std::collections::HashSet<u128> =
            (0..20).map(|_| b.next_delay().as_millis()).collect();
        assert!(delays.len() > 15, "{delays:?}");
        assert!(
            delays.iter().all(|d| (5_000..=10_000).contains(d)),
            "{delays:?}"
        );
    }
}
