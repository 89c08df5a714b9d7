//! Log tailing.
//!
//! Every poll the tailer re-expands each source's globs (new files are picked up), reads what
//! was appended to every tracked file, and turns it into records (see [`assembler`]) with a
//! severity (see [`severity`]). Files are tracked by device and inode through an open
//! descriptor, so:
//!
//! * **rename-and-create rotation**: the renamed file keeps being read through its descriptor
//!   until it has been quiet for `rotate_wait`, and the new file under the old name is a new
//!   inode, read from its first byte;
//! * **copytruncate rotation**: the file shrinks (or its first bytes change) and is re-read
//!   from the start.
//!
//! Files present at the very first start begin at their end (`start_at = "end"`); any file
//! the agent has no position for after that was created while it ran or was down, and is read
//! from its beginning. Positions are saved (see [`checkpoint`]) only when the forecaster has
//! acknowledged the batch, and batches still in the spool carry theirs, so a restart resumes
//! exactly after the last line handed to the exporter: nothing is lost or read twice.

pub(crate) mod assembler;
pub(crate) mod checkpoint;
pub(crate) mod severity;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use presage_config::{LogsConfig, StartAt};
use prost::Message;
use regex_lite::Regex;
use tokio::sync::{mpsc, watch};

use crate::export::{Batch, Signal};
use crate::otlp::{kv, logs_request, now_ns, resource};
use crate::resource::Identity;
use crate::telemetry::Telemetry;
use assembler::Assembler;
use checkpoint::{Checkpoint, CheckpointStore, FINGERPRINT_BYTES, FileKey, fingerprint};

/// Most bytes read from one file in one poll (the rest waits for the next poll).
const READ_BUDGET: u64 = 1 << 20;

/// Validates the parts of a `[[logs]]` section the configuration crate cannot: its glob
/// patterns and its start regex. Returns `(dotted path, message)` problems.
pub(crate) fn check(i: usize, cfg: &LogsConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (j, p) in cfg.paths.iter().enumerate() {
        if let Err(e) = glob::Pattern::new(p) {
            out.push((
                format!("logs[{i}].paths[{j}]"),
                format!("invalid glob `{p}`: {e}"),
            ));
        }
    }
    for (j, p) in cfg.exclude.iter().enumerate() {
        if let Err(e) = glob::Pattern::new(p) {
            out.push((
                format!("logs[{i}].exclude[{j}]"),
                format!("invalid glob `{p}`: {e}"),
            ));
        }
    }
    if let Some(re) = &cfg.multiline_start
        && let Err(e) = Regex::new(re)
    {
        let msg = e.to_string().replace('\n', " ");
        out.push((
            format!("logs[{i}].multiline_start"),
            format!("invalid regular expression: {msg}"),
        ));
    }
    out
}

struct Source {
    cfg: LogsConfig,
    exclude: Vec<glob::Pattern>,
    start: Option<Regex>,
    resource: Resource,
    attributes: Vec<KeyValue>,
    next_due: Instant,
}

struct Tracked {
    source: usize,
    path: PathBuf,
    file: File,
    /// Next byte to read.
    offset: u64,
    /// Size at the last poll.
    size_seen: u64,
    fp_len: u32,
    fp: u64,
    asm: Assembler,
    orphaned_since: Option<Instant>,
    /// Safe offset last put in a batch.
    reported: u64,
}

impl Tracked {
    fn checkpoint(&self, key: FileKey, offset: u64) -> Checkpoint {
        Checkpoint {
            dev: key.0,
            ino: key.1,
            path: self.path.display().to_string(),
            offset,
            fp_len: self.fp_len,
            fp: self.fp,
        }
    }
}

/// Fingerprint of the first `len` bytes of `file` (fewer if it is shorter).
fn head(file: &File, len: usize) -> std::io::Result<(u32, u64)> {
    let mut buf = [0u8; FINGERPRINT_BYTES];
    let want = len.min(FINGERPRINT_BYTES);
    let mut got = 0;
    while got < want {
        let n = file.read_at(&mut buf[got..want], got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok((got as u32, fingerprint(&buf[..got])))
}

/// Whether `file` still starts with the bytes `cp` fingerprinted.
fn same_file(file: &File, size: u64, fp_len: u32, fp: u64) -> bool {
    if fp_len == 0 {
        return true;
    }
    if size < u64::from(fp_len) {
        return false;
    }
    matches!(head(file, fp_len as usize), Ok((n, h)) if n == fp_len && h == fp)
}

/// One line read, waiting to be batched.
struct Item {
    source: usize,
    key: FileKey,
    end_offset: u64,
    record: LogRecord,
}

/// The tailer of every `[[logs]]` source.
pub(crate) struct Tailer {
    sources: Vec<Source>,
    files: HashMap<FileKey, Tracked>,
    store: Arc<Mutex<CheckpointStore>>,
    resume: HashMap<FileKey, Checkpoint>,
    first_poll: bool,
    tel: Arc<Telemetry>,
    max_records: usize,
    buf: Vec<u8>,
}

impl Tailer {
    /// A tailer; `resume` holds the newest positions found in the spool.
    pub(crate) fn new(
        cfgs: &[LogsConfig],
        identity: &Identity,
        store: Arc<Mutex<CheckpointStore>>,
        resume: HashMap<FileKey, Checkpoint>,
        tel: Arc<Telemetry>,
        max_records: usize,
    ) -> Result<Self, String> {
        let now = Instant::now();
        let mut sources = Vec::new();
        for (i, cfg) in cfgs.iter().enumerate() {
            if let Some((path, msg)) = check(i, cfg).into_iter().next() {
                return Err(format!("{path}: {msg}"));
            }
            let start = match &cfg.multiline_start {
                Some(re) => Some(Regex::new(re).map_err(|e| e.to_string())?),
                None => None,
            };
            let exclude = cfg
                .exclude
                .iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect();
            sources.push(Source {
                exclude,
                start,
                resource: resource(&identity.attributes(cfg.service_name.as_deref())),
                attributes: cfg
                    .attributes
                    .iter()
                    .map(|(k, v)| kv(k.as_str(), v.as_str()))
                    .collect(),
                next_due: now,
                cfg: cfg.clone(),
            });
        }
        Ok(Self {
            sources,
            files: HashMap::new(),
            store,
            resume,
            first_poll: true,
            tel,
            max_records: max_records.max(1),
            buf: vec![0; 64 * 1024],
        })
    }

    /// How often the tailer wakes up: the shortest poll interval.
    pub(crate) fn tick(&self) -> Duration {
        self.sources
            .iter()
            .map(|s| s.cfg.poll_interval)
            .min()
            .unwrap_or(Duration::from_secs(1))
    }

    fn with_store<T>(&self, f: impl FnOnce(&mut CheckpointStore) -> T) -> Option<T> {
        match self.store.lock() {
            Ok(mut s) => Some(f(&mut s)),
            Err(_) => {
                tracing::error!("checkpoint store poisoned");
                None
            }
        }
    }

    /// Files matching source `i`, with their identity.
    fn discover(&self, i: usize) -> Vec<(PathBuf, FileKey)> {
        let src = &self.sources[i];
        let mut out = Vec::new();
        for pattern in &src.cfg.paths {
            let Ok(paths) = glob::glob(pattern) else {
                continue;
            };
            for path in paths.flatten() {
                if src.exclude.iter().any(|e| e.matches_path(&path)) {
                    continue;
                }
                // Follows symbolic links (Kubernetes' /var/log/containers/*.log are links).
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => out.push((path, (m.dev(), m.ino()))),
                    _ => {}
                }
            }
        }
        out
    }

    /// Where to start reading a newly found file.
    fn start_offset(&self, key: FileKey, file: &File, size: u64, src: &Source) -> u64 {
        let stored = self
            .with_store(|s| (s.get(key).cloned(), s.existed()))
            .unwrap_or((None, true));
        let spooled = if self.first_poll {
            self.resume.get(&key).cloned()
        } else {
            None
        };
        for cp in spooled.iter().chain(stored.0.iter()) {
            if same_file(file, size, cp.fp_len, cp.fp) {
                // A file shorter than its position was truncated while we were away.
                return if cp.offset <= size { cp.offset } else { 0 };
            }
        }
        if self.first_poll && !stored.1 {
            return match src.cfg.start_at {
                StartAt::End => size,
                StartAt::Beginning => 0,
            };
        }
        0
    }

    fn open(&mut self, i: usize, path: PathBuf) {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot open log file");
                return;
            }
        };
        let Ok(meta) = file.metadata() else { return };
        let key = (meta.dev(), meta.ino());
        if self.files.contains_key(&key) {
            return;
        }
        let size = meta.len();
        let offset = self.start_offset(key, &file, size, &self.sources[i]);
        let (fp_len, fp) = head(&file, FINGERPRINT_BYTES).unwrap_or((0, 0));
        tracing::info!(path = %path.display(), offset, size, "tailing");
        let t = Tracked {
            source: i,
            asm: Assembler::new(
                self.sources[i].start.clone(),
                self.sources[i].cfg.max_line_size.as_usize(),
                offset,
            ),
            path,
            file,
            offset,
            size_seen: size,
            fp_len,
            fp,
            orphaned_since: None,
            reported: offset,
        };
        let initial = t.checkpoint(key, offset);
        self.with_store(|s| s.track(initial));
        self.files.insert(key, t);
    }

    /// One poll: discovery, reading, batching.
    pub(crate) fn poll(&mut self, now: Instant) -> Vec<Batch> {
        let now_nanos = now_ns();
        let mut due = vec![false; self.sources.len()];
        let mut seen: HashMap<FileKey, (usize, PathBuf)> = HashMap::new();
        for (i, src) in self.sources.iter_mut().enumerate() {
            if src.next_due <= now {
                due[i] = true;
                src.next_due = now + src.cfg.poll_interval;
            }
        }
        for (i, _) in due.iter().enumerate().filter(|(_, d)| **d) {
            for (path, key) in self.discover(i) {
                seen.entry(key).or_insert((i, path));
            }
        }
        // Renamed, vanished and reappeared files.
        for (key, t) in &mut self.files {
            if !due[t.source] {
                continue;
            }
            match seen.get(key) {
                Some((_, path)) => {
                    t.orphaned_since = None;
                    if *path != t.path {
                        tracing::debug!(from = %t.path.display(), to = %path.display(), "log file renamed");
                        t.path = path.clone();
                    }
                }
                None => {
                    if t.orphaned_since.is_none() {
                        tracing::debug!(path = %t.path.display(), "log file rotated away or deleted; draining it");
                        t.orphaned_since = Some(now);
                    }
                }
            }
        }
        let mut new: Vec<(usize, PathBuf)> = seen
            .into_iter()
            .filter(|(key, _)| !self.files.contains_key(key))
            .map(|(_, v)| v)
            .collect();
        new.sort();
        for (i, path) in new {
            self.open(i, path);
        }
        if self.first_poll {
            self.first_poll = false;
            self.resume.clear();
            self.with_store(|s| {
                s.retain_live();
                if let Err(e) = s.save() {
                    tracing::error!(error = %e, "cannot save log checkpoints");
                }
            });
        }

        let mut items: Vec<Item> = Vec::new();
        let mut closed: Vec<FileKey> = Vec::new();
        let keys: Vec<FileKey> = self.files.keys().copied().collect();
        for key in keys {
            let Some(t) = self.files.get_mut(&key) else {
                continue;
            };
            if !due[t.source] {
                continue;
            }
            let src = &self.sources[t.source];
            let mut records = Vec::new();
            let read = read_file(t, &mut self.buf, now, &mut records, &self.tel);
            t.asm
                .flush_idle(now, src.cfg.multiline_timeout, &mut records);
            let drained = read == 0 && t.offset >= t.size_seen;
            if drained
                && t.orphaned_since
                    .is_some_and(|s| now.duration_since(s) >= src.cfg.rotate_wait)
            {
                t.asm.finish(now, &mut records);
                closed.push(key);
            }
            let (lines, truncated) = (t.asm.lines, t.asm.truncated);
            t.asm.lines = 0;
            t.asm.truncated = 0;
            self.tel.log_lines.add(lines);
            self.tel.log_lines_truncated.add(truncated);
            for r in records {
                items.push(Item {
                    source: t.source,
                    key,
                    end_offset: r.end_offset,
                    record: log_record(r.text, now_nanos, &t.path, &src.attributes),
                });
            }
        }
        self.tel.log_records.add(items.len() as u64);
        let batches = self.batch(items);
        for key in closed {
            if let Some(t) = self.files.remove(&key) {
                tracing::info!(path = %t.path.display(), "stopped tailing a rotated or deleted file");
            }
            self.with_store(|s| s.untrack(key));
        }
        self.tel.log_files.set(self.files.len() as u64);
        batches
    }

    fn batch(&mut self, items: Vec<Item>) -> Vec<Batch> {
        if items.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let n_chunks = items.len().div_ceil(self.max_records);
        let mut it = items.into_iter();
        for chunk_no in 0..n_chunks {
            let chunk: Vec<Item> = it.by_ref().take(self.max_records).collect();
            let mut ends: HashMap<FileKey, u64> = HashMap::new();
            let mut groups: Vec<Vec<LogRecord>> = vec![Vec::new(); self.sources.len()];
            let count = chunk.len() as u64;
            for item in chunk {
                ends.insert(item.key, item.end_offset);
                groups[item.source].push(item.record);
            }
            if chunk_no + 1 == n_chunks {
                // The last batch also covers skipped blank lines and multi-line heads.
                for (key, t) in &self.files {
                    if t.asm.safe_offset() != t.reported || ends.contains_key(key) {
                        ends.insert(*key, t.asm.safe_offset());
                    }
                }
            }
            let mut checkpoints = Vec::new();
            for (key, end) in ends {
                if let Some(t) = self.files.get_mut(&key) {
                    t.reported = end;
                    checkpoints.push(t.checkpoint(key, end));
                }
            }
            let request = logs_request(
                self.sources
                    .iter()
                    .zip(groups)
                    .map(|(s, records)| (s.resource.clone(), records))
                    .collect(),
            );
            out.push(Batch {
                signal: Signal::Logs,
                payload: Bytes::from(request.encode_to_vec()),
                items: count,
                checkpoints,
            });
        }
        out
    }

    /// Polls every tick and hands batches to the exporter until `shutdown`. A multi-line
    /// record still waiting for lines is not sent: its lines are read again after a restart.
    pub(crate) async fn run(
        mut self,
        tx: mpsc::Sender<Batch>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.tick());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            for batch in self.poll(Instant::now()) {
                if tx.send(batch).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads what was appended to `t` (handling truncation); returns the bytes read.
fn read_file(
    t: &mut Tracked,
    buf: &mut [u8],
    now: Instant,
    out: &mut Vec<assembler::Record>,
    tel: &Telemetry,
) -> u64 {
    let size = match t.file.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            tracing::debug!(path = %t.path.display(), error = %e, "cannot stat log file");
            return 0;
        }
    };
    if size != t.size_seen {
        let rewritten = size < t.offset || !same_file(&t.file, size, t.fp_len, t.fp);
        if rewritten {
            tracing::info!(path = %t.path.display(), "log file truncated (copytruncate); reading it from the start");
            tel.log_truncations.add(1);
            t.offset = 0;
            t.asm.reset(0);
            t.fp_len = 0;
            t.fp = 0;
        }
        if (t.fp_len as usize) < FINGERPRINT_BYTES
            && let Ok((len, fp)) = head(&t.file, FINGERPRINT_BYTES)
        {
            t.fp_len = len;
            t.fp = fp;
        }
        t.size_seen = size;
    }
    let mut read = 0u64;
    while t.offset < size && read < READ_BUDGET {
        let want = (size - t.offset)
            .min(READ_BUDGET - read)
            .min(buf.len() as u64) as usize;
        match t.file.read_at(&mut buf[..want], t.offset) {
            Ok(0) => break,
            Ok(n) => {
                t.asm.feed(&buf[..n], now, out);
                t.offset += n as u64;
                read += n as u64;
            }
            Err(e) => {
                tracing::warn!(path = %t.path.display(), error = %e, "read failed");
                break;
            }
        }
    }
    read
}

fn log_record(text: String, now_ns: u64, path: &std::path::Path, extra: &[KeyValue]) -> LogRecord {
    let sev = severity::detect(&text);
    let mut attributes = Vec::with_capacity(2 + extra.len());
    attributes.push(kv("log.file.path", path.display().to_string()));
    if let Some(name) = path.file_name() {
        attributes.push(kv("log.file.name", name.to_string_lossy().into_owned()));
    }
    attributes.extend(extra.iter().cloned());
    LogRecord {
        observed_time_unix_nano: now_ns,
        severity_number: sev.map_or(0, |s| s.number),
        severity_text: sev.map_or("", |s| s.text).to_string(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(text)),
        }),
        attributes,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
