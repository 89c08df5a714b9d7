//! The store on disk: a journal of accepted writes plus periodic checkpoints, in fjall.
//!
//! Writers append what they accepted to an in-memory journal buffer while they still hold the
//! shard lock of the series, so the buffer orders the writes of one series exactly as they were
//! applied. A committer thread moves the buffer into the `journal` keyspace (one entry per
//! group, keyed by the buffer position at its end) and flushes it to the device according to
//! `storage.fsync`; a write is acknowledged once the position after it is committed.
//!
//! A checkpoint records the committed position `P`, then writes what changed in each series
//! since the previous checkpoint: sealed chunks once, the small head (open step, newest chunk,
//! detector state) and, after a fit, the baseline. Everything at or before `P` had been applied
//! before the checkpoint read the series, so the journal up to `P` is dropped. A restart loads
//! the checkpoint and replays the journal after it; replaying a point the checkpoint already
//! holds is a no-op (it is not newer than the series' newest point), so the two may overlap.
//!
//! Keyspaces: `series` (id → kind and labels), `chunks` (id, start → sealed chunk), `heads`
//! (id → head), `models` (id → baseline), `journal` (position → records), `meta`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::{Condvar, Mutex};
use presage_config::FsyncPolicy;
use tokio::sync::watch;

use super::SeriesId;
use crate::ingest::{Point, ValueKind};

/// Version of the on-disk layout; a directory written by another version is refused.
const FORMAT: u32 = 2;

/// Block cache of the database.
const CACHE_BYTES: u64 = 16 << 20;
/// One keyspace's memtable.
const MEMTABLE_BYTES: u64 = 8 << 20;

const TAG_SERIES: u8 = 1;
const TAG_POINTS: u8 = 2;

/// Bytes of one point in a journal record.
const POINT_BYTES: usize = 24;

/// Accepted writes not yet handed to the committer.
#[derive(Debug, Default)]
pub(crate) struct JournalBuf {
    bytes: Vec<u8>,
    /// Journal position at the end of `bytes`.
    end: u64,
}

/// The journal buffer shared by writers and the committer thread.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    buf: Mutex<JournalBuf>,
    wake: Condvar,
}

impl Journal {
    fn starting_at(pos: u64) -> Self {
        Self {
            buf: Mutex::new(JournalBuf {
                bytes: Vec::new(),
                end: pos,
            }),
            wake: Condvar::new(),
        }
    }

    /// Appends a new series' record; returns the position after it.
    pub(crate) fn series(&self, id: SeriesId, kind: ValueKind, labels: &[(String, String)]) -> u64 {
        let mut rec = Vec::with_capacity(16 + labels.len() * 24);
        rec.push(TAG_SERIES);
        rec.extend_from_slice(&id.to_le_bytes());
        encode_series_meta(kind, labels, &mut rec);
        self.append(&rec)
    }

    /// Appends a series' accepted points (`history`: stored without scoring); returns the
    /// position after them.
    pub(crate) fn points(&self, id: SeriesId, history: bool, points: &[Point]) -> u64 {
        let mut rec = Vec::with_capacity(14 + points.len() * POINT_BYTES);
        rec.push(TAG_POINTS);
        rec.extend_from_slice(&id.to_le_bytes());
        rec.push(u8::from(history));
        rec.extend_from_slice(&(points.len() as u32).to_le_bytes());
        for p in points {
            rec.extend_from_slice(&p.ts_ms.to_le_bytes());
            rec.extend_from_slice(&p.value.to_bits().to_le_bytes());
            rec.extend_from_slice(&p.start_ms.to_le_bytes());
        }
        self.append(&rec)
    }

    fn append(&self, rec: &[u8]) -> u64 {
        let mut buf = self.buf.lock();
        buf.bytes.extend_from_slice(rec);
        buf.end += rec.len() as u64;
        let end = buf.end;
        drop(buf);
        self.wake.notify_one();
        end
    }
}

/// One record of the journal, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    /// A series was created.
    Series {
        id: SeriesId,
        kind: ValueKind,
        labels: Vec<(String, String)>,
    },
    /// Points accepted for a series.
    Points {
        id: SeriesId,
        history: bool,
        points: Vec<Point>,
    },
}

/// Decodes the records of one journal entry.
pub(crate) fn decode_records(mut bytes: &[u8]) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = bytes.split_first() {
        bytes = rest;
        let id = SeriesId::from_le_bytes(take_array(&mut bytes)?);
        match tag {
            TAG_SERIES => {
                let (kind, labels) = decode_series_meta(&mut bytes)?;
                out.push(Record::Series { id, kind, labels });
            }
            TAG_POINTS => {
                let [history] = take_array::<1>(&mut bytes)?;
                let n = u32::from_le_bytes(take_array(&mut bytes)?) as usize;
                if bytes.len() < n.saturating_mul(POINT_BYTES) {
                    return Err(format!("a record of {n} points is cut short"));
                }
                let mut points = Vec::with_capacity(n);
                for _ in 0..n {
                    let ts_ms = i64::from_le_bytes(take_array(&mut bytes)?);
                    let value = f64::from_bits(u64::from_le_bytes(take_array(&mut bytes)?));
                    let start_ms = i64::from_le_bytes(take_array(&mut bytes)?);
                    points.push(Point {
                        ts_ms,
                        value,
                        start_ms,
                    });
                }
                out.push(Record::Points {
                    id,
                    history: history != 0,
                    points,
                });
            }
            other => return Err(format!("unknown record type {other}")),
        }
    }
    Ok(out)
}

fn take_array<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], String> {
    let Some((head, rest)) = bytes.split_first_chunk::<N>() else {
        return Err("a record is cut short".into());
    };
    *bytes = rest;
    Ok(*head)
}

fn kind_byte(kind: ValueKind) -> u8 {
    match kind {
        ValueKind::Gauge => 0,
        ValueKind::Counter => 1,
        ValueKind::Delta => 2,
    }
}

/// Kind and labels: the `series` keyspace's value and the body of a series record.
pub(crate) fn encode_series_meta(kind: ValueKind, labels: &[(String, String)], out: &mut Vec<u8>) {
    out.push(kind_byte(kind));
    out.extend_from_slice(&(labels.len() as u16).to_le_bytes());
    for (n, v) in labels {
        for s in [n, v] {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

pub(crate) fn decode_series_meta(
    bytes: &mut &[u8],
) -> Result<(ValueKind, Vec<(String, String)>), String> {
    let [kind] = take_array::<1>(bytes)?;
    let kind = match kind {
        0 => ValueKind::Gauge,
        1 => ValueKind::Counter,
        2 => ValueKind::Delta,
        other => return Err(format!("unknown series kind {other}")),
    };
    let n = u16::from_le_bytes(take_array(bytes)?) as usize;
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let mut pair = [String::new(), String::new()];
        for s in &mut pair {
            let len = u32::from_le_bytes(take_array(bytes)?) as usize;
            if bytes.len() < len {
                return Err("a label is cut short".into());
            }
            let (text, rest) = bytes.split_at(len);
            *s = std::str::from_utf8(text)
                .map_err(|_| "a label is not UTF-8".to_string())?
                .to_owned();
            *bytes = rest;
        }
        let [n, v] = pair;
        labels.push((n, v));
    }
    Ok((kind, labels))
}

/// Key of a series' sealed chunk: the series id, then the chunk's start, both big-endian so
/// that a series' chunks sort together and in time order (starts are shifted to unsigned).
pub(crate) fn chunk_key(id: SeriesId, start_ms: i64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&id.to_be_bytes());
    k[8..].copy_from_slice(&((start_ms as u64) ^ (1 << 63)).to_be_bytes());
    k
}

/// The committed journal position, or the error that stopped commits.
#[derive(Debug, Clone, Default)]
pub(crate) struct Committed {
    pub(crate) pos: u64,
    pub(crate) error: Option<String>,
}

/// The open database and its committer thread.
pub struct Durable {
    pub(crate) db: Database,
    pub(crate) series: Keyspace,
    pub(crate) chunks: Keyspace,
    pub(crate) heads: Keyspace,
    pub(crate) models: Keyspace,
    pub(crate) journal_ks: Keyspace,
    pub(crate) meta: Keyspace,
    pub(crate) journal: Arc<Journal>,
    committed: watch::Sender<Committed>,
    stop: Arc<AtomicBool>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    path: PathBuf,
    /// The journal position the newest checkpoint covers.
    pub(crate) checkpointed: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").field("path", &self.path).finish()
    }
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// fjall refused (permissions, another process holds the directory, corruption).
    #[error("cannot open the store in {path}: {source}")]
    Db {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: fjall::Error,
    },
    /// The directory was written with settings or a format this daemon cannot read.
    #[error("{0}")]
    Incompatible(String),
}

impl Durable {
    /// Opens (or creates) the database in `path`, checking that it was written with the same
    /// step, and starts the committer thread.
    pub fn open(
        path: &Path,
        step_ms: i64,
        fsync: FsyncPolicy,
        fsync_interval: Duration,
    ) -> Result<Self, OpenError> {
        let db_err = |source| OpenError::Db {
            path: path.to_owned(),
            source,
        };
        let db = Database::builder(path)
            // The committer flushes the journal itself, once per group of writes.
            .manual_journal_persist(true)
            .worker_threads(2)
            // Bounded memory: history is served from the in-memory store, so the database
            // needs little cache, and small memtables (written out sooner) suffice: at most
            // six keyspaces of MEMTABLE_BYTES (and as much again being written out).
            .cache_size(CACHE_BYTES)
            .open()
            .map_err(db_err)?;
        let ks = |name: &str| {
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES)
            })
        };
        let series = ks("series").map_err(db_err)?;
        // Chunks are compressed already: another pass would cost time and save nothing.
        let chunks = db
            .keyspace("chunks", || {
                KeyspaceCreateOptions::default()
                    .max_memtable_size(MEMTABLE_BYTES)
                    .data_block_compression_policy(fjall::config::CompressionPolicy::disabled())
            })
            .map_err(db_err)?;
        let heads = ks("heads").map_err(db_err)?;
        let models = ks("models").map_err(db_err)?;
        let journal_ks = ks("journal").map_err(db_err)?;
        let meta = ks("meta").map_err(db_err)?;

        let read_u64 = |key: &str| -> Result<Option<u64>, OpenError> {
            Ok(meta
                .get(key)
                .map_err(db_err)?
                .and_then(|v| <[u8; 8]>::try_from(&*v).ok())
                .map(u64::from_le_bytes))
        };
        match read_u64("format")? {
            None => {
                meta.insert("format", u64::from(FORMAT).to_le_bytes())
                    .map_err(db_err)?;
                meta.insert("step_ms", (step_ms as u64).to_le_bytes())
                    .map_err(db_err)?;
                db.persist(PersistMode::SyncAll).map_err(db_err)?;
            }
            Some(f) if f != u64::from(FORMAT) => {
                return Err(OpenError::Incompatible(format!(
                    "the store in {} has format {f}; this version of presage reads format {FORMAT}",
                    path.display()
                )));
            }
            Some(_) => {
                let stored = read_u64("step_ms")?.unwrap_or(0) as i64;
                if stored != step_ms {
                    return Err(OpenError::Incompatible(format!(
                        "the store in {} holds history resampled to a {}s step, but model.step is {}s: set model.step back, or move the directory aside to start afresh",
                        path.display(),
                        stored as f64 / 1000.0,
                        step_ms as f64 / 1000.0
                    )));
                }
            }
        }
        let checkpoint = read_u64("checkpoint")?.unwrap_or(0);
        let newest_entry = journal_ks
            .last_key_value()
            .map(|g| g.key())
            .transpose()
            .map_err(db_err)?
            .and_then(|k| <[u8; 8]>::try_from(&*k).ok())
            .map_or(0, u64::from_be_bytes);
        let start = checkpoint.max(newest_entry);
        let journal = Arc::new(Journal::starting_at(start));
        let (committed, _) = watch::channel(Committed {
            pos: start,
            error: None,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let durable = Self {
            db,
            series,
            chunks,
            heads,
            models,
            journal_ks,
            meta,
            journal,
            committed,
            stop,
            committer: Mutex::new(None),
            path: path.to_owned(),
            checkpointed: std::sync::atomic::AtomicU64::new(checkpoint),
        };
        let committer = Committer {
            db: durable.db.clone(),
            journal_ks: durable.journal_ks.clone(),
            journal: durable.journal.clone(),
            committed: durable.committed.clone(),
            stop: durable.stop.clone(),
            fsync,
            fsync_interval,
        };
        let handle = std::thread::Builder::new()
            .name("presage-journal".into())
            .spawn(move || committer.run())
            .map_err(|e| db_err(fjall::Error::from(e)))?;
        *durable.committer.lock() = Some(handle);
        Ok(durable)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The journal position the last checkpoint covers.
    pub(crate) fn checkpoint_pos(&self) -> Result<u64, fjall::Error> {
        Ok(self
            .meta
            .get("checkpoint")?
            .and_then(|v| <[u8; 8]>::try_from(&*v).ok())
            .map_or(0, u64::from_le_bytes))
    }

    /// Journal bytes written since the last checkpoint (or since start-up).
    pub fn journal_backlog(&self) -> u64 {
        let end = self.journal.buf.lock().end;
        end.saturating_sub(self.checkpointed.load(Ordering::Relaxed))
    }

    /// The newest committed journal position.
    #[cfg(test)]
    pub(crate) fn committed_pos(&self) -> u64 {
        self.committed.borrow().pos
    }

    /// Blocks until everything appended to the journal so far is committed, and returns that
    /// position: every write applied before the call is covered by it.
    pub(crate) fn sync_journal(&self) -> Result<u64, fjall::Error> {
        let end = self.journal.buf.lock().end;
        self.journal.wake.notify_one();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let c = self.committed.borrow().clone();
            if c.pos >= end {
                return Ok(end);
            }
            if let Some(e) = c.error {
                return Err(fjall::Error::from(std::io::Error::other(e)));
            }
            if Instant::now() > deadline {
                return Err(fjall::Error::from(std::io::Error::other(
                    "the journal was not committed within 2 minutes",
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits until the journal is committed up to `pos`.
    pub async fn wait_committed(&self, pos: u64) -> Result<(), String> {
        let mut rx = self.committed.subscribe();
        let c = rx
            .wait_for(|c| c.pos >= pos || c.error.is_some())
            .await
            .map_err(|_| "the store is shutting down".to_string())?;
        match &c.error {
            Some(e) if c.pos < pos => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// The journal entries after `pos`, in order.
    pub(crate) fn journal_after(
        &self,
        pos: u64,
    ) -> impl Iterator<Item = Result<(u64, fjall::Slice), fjall::Error>> + '_ {
        self.journal_ks.range((pos + 1).to_be_bytes()..).map(|g| {
            let (k, v) = g.into_inner()?;
            let key = <[u8; 8]>::try_from(&*k).map_or(0, u64::from_be_bytes);
            Ok((key, v))
        })
    }

    /// Bytes the database uses on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }

    /// Commits what is left in the journal buffer, stops the committer and flushes.
    pub fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.journal.wake.notify_all();
        if let Some(handle) = self.committer.lock().take() {
            let _ = handle.join();
        }
        if let Err(e) = self.db.persist(PersistMode::SyncAll) {
            tracing::error!(error = %e, "cannot flush the store");
        }
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        self.close();
    }
}

struct Committer {
    db: Database,
    journal_ks: Keyspace,
    journal: Arc<Journal>,
    committed: watch::Sender<Committed>,
    stop: Arc<AtomicBool>,
    fsync: FsyncPolicy,
    fsync_interval: Duration,
}

impl Committer {
    fn run(self) {
        let mut last_sync = Instant::now();
        let mut unsynced = false;
        loop {
            let taken = {
                let mut buf = self.journal.buf.lock();
                while buf.bytes.is_empty() && !self.stop.load(Ordering::SeqCst) {
                    let wait = if unsynced {
                        self.fsync_interval.saturating_sub(last_sync.elapsed())
                    } else {
                        Duration::from_secs(1)
                    };
                    if wait.is_zero() {
                        break;
                    }
                    self.journal.wake.wait_for(&mut buf, wait);
                }
                (!buf.bytes.is_empty()).then(|| (std::mem::take(&mut buf.bytes), buf.end))
            };
            match taken {
                Some((bytes, end)) => {
                    let mut batch = self.db.batch();
                    if self.fsync == FsyncPolicy::Always {
                        batch = batch.durability(Some(PersistMode::SyncData));
                    }
                    batch.insert(&self.journal_ks, end.to_be_bytes(), bytes);
                    let result = batch.commit().and_then(|()| {
                        if self.fsync == FsyncPolicy::Always {
                            Ok(())
                        } else {
                            // In the operating system's hands: safe from a crash of the daemon.
                            self.db.persist(PersistMode::Buffer)
                        }
                    });
                    match result {
                        Ok(()) => {
                            unsynced = self.fsync == FsyncPolicy::Interval;
                            self.committed.send_modify(|c| c.pos = end);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot write the journal: writes are refused until a restart");
                            self.committed.send_modify(|c| {
                                c.error = Some(format!("the store cannot write its journal: {e}"));
                            });
                        }
                    }
                }
                None if self.stop.load(Ordering::SeqCst) => {
                    // Writes after this are not journaled: their senders get an error to retry.
                    self.committed.send_modify(|c| {
                        c.error.get_or_insert_with(|| "the store is closed".into());
                    });
                    return;
                }
                None => {}
            }
            if unsynced && last_sync.elapsed() >= self.fsync_interval {
                if let Err(e) = self.db.persist(PersistMode::SyncData) {
                    tracing::error!(error = %e, "cannot flush the journal");
                }
                unsynced = false;
                last_sync = Instant::now();
            }
        }
    }
}

/// (De)serializes a byte vector as one byte string, not as a sequence of numbers: a chunk's
/// bits are copied in one go instead of byte by byte.
pub(crate) mod byte_vec {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

/// (De)serializes a fixed-size array of `f32` as a sequence (serde derives stop at 32).
pub(crate) mod fixed_array {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        a: &[f32; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(a.iter())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[f32; N], D::Error> {
        let v = Vec::<f32>::deserialize(d)?;
        let len = v.len();
        v.try_into()
            .map_err(|_| D::Error::invalid_length(len, &"a fixed number of values"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let journal = Journal::starting_at(100);
        let labels = vec![
            ("__name__".to_string(), "cpu".to_string()),
            ("host".to_string(), "é-1".to_string()),
        ];
        let a = journal.series(7, ValueKind::Counter, &labels);
        let points = [
            Point::new(60_000, 1.5),
            Point {
                ts_ms: 120_000,
                value: -0.0,
                start_ms: 5,
            },
        ];
        let b = journal.points(7, true, &points);
        assert!(a > 100 && b > a);
        let bytes = journal.buf.lock().bytes.clone();
        assert_eq!(b, 100 + bytes.len() as u64);
        let records = decode_records(&bytes).unwrap();
        assert_eq!(
            records,
            vec![
                Record::Series {
                    id: 7,
                    kind: ValueKind::Counter,
                    labels
                },
                Record::Points {
                    id: 7,
                    history: true,
                    points: points.to_vec()
                }
            ]
        );
        // A cut record is an error, not a panic.
        for cut in 1..bytes.len() {
            if let Ok(r) = decode_records(&bytes[..cut]) {
                assert!(r.len() < 2, "cut at {cut}");
            }
        }
    }

    #[test]
    fn writes_are_acknowledged_once_committed_and_refused_after_close() {
        let dir = tempfile::tempdir().unwrap();
        let db = Durable::open(
            dir.path(),
            60_000,
            FsyncPolicy::Always,
            Duration::from_secs(1),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let pos = db.journal.points(1, false, &[Point::new(60_000, 1.0)]);
        rt.block_on(db.wait_committed(pos)).unwrap();
        assert_eq!(db.journal_after(0).count(), 1);
        assert_eq!(db.journal_backlog(), pos);
        db.close();
        let late = db.journal.points(1, false, &[Point::new(120_000, 1.0)]);
        let err = rt.block_on(db.wait_committed(late)).unwrap_err();
        assert!(err.contains("closed"), "{err}");
        // What was committed is there after a reopen; the late write is not.
        drop(db);
        let db = Durable::open(
            dir.path(),
            60_000,
            FsyncPolicy::Always,
            Duration::from_secs(1),
        )
        .unwrap();
        let entries: Vec<u64> = db.journal_after(0).map(|e| e.unwrap().0).collect();
        assert_eq!(entries, [pos]);
    }

    #[test]
    fn chunk_keys_sort_by_series_then_time() {
        let mut keys = [
            chunk_key(2, -60_000),
            chunk_key(1, 120_000),
            chunk_key(2, 0),
            chunk_key(1, -1),
        ];
        keys.sort();
        assert_eq!(
            keys,
            [
                chunk_key(1, -1),
                chunk_key(1, 120_000),
                chunk_key(2, -60_000),
                chunk_key(2, 0)
            ]
        );
    }
}
