//! The on-disk spool: export batches the forecaster has not acknowledged yet, oldest first,
//! bounded in bytes.
//!
//! One file per batch, named by a sequence number so the directory sorts in order; each holds
//! a small JSON header (signal, item count, the log checkpoints the batch completes) and the
//! serialized OTLP request. Files are written to a temporary name and renamed, so a crash
//! never leaves half a batch. When the spool is full the oldest batches are deleted and
//! counted as dropped.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Batch, Signal};
use crate::logs::checkpoint::{Checkpoint, FileKey};

const MAGIC: &[u8; 8] = b"PSPOOL1\n";
const SUFFIX: &str = ".batch";

#[derive(Serialize, Deserialize)]
struct Header {
    signal: Signal,
    items: u64,
    #[serde(default)]
    checkpoints: Vec<Checkpoint>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    size: u64,
    items: u64,
}

/// Batches and items removed to make room, or refused because a batch alone is too big.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// Batches.
    pub(crate) batches: u64,
    /// Data points or log records in them.
    pub(crate) items: u64,
}

/// The spool directory.
#[derive(Debug)]
pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    entries: VecDeque<Entry>,
    bytes: u64,
    next_seq: u64,
    /// The batch being sent, never evicted.
    pinned: Option<u64>,
}

/// What [`Spool::open`] found besides the batches.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// For each log file, the newest position a spooled batch reaches: tailing resumes there,
    /// so the spooled lines are neither lost nor read twice.
    pub(crate) log_positions: HashMap<FileKey, Checkpoint>,
    /// Unreadable spool files that were deleted.
    pub(crate) corrupt: u64,
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}{SUFFIX}")
}

fn encode(batch: &Batch) -> std::io::Result<Vec<u8>> {
    let header = serde_json::to_vec(&Header {
        signal: batch.signal,
        items: batch.items,
        checkpoints: batch.checkpoints.clone(),
    })
    .map_err(std::io::Error::other)?;
    let len = u32::try_from(header.len()).map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + batch.payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&batch.payload);
    Ok(out)
}

fn decode(bytes: Vec<u8>) -> Result<Batch, String> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or("not a spool file")?;
    let (len, rest) = rest.split_at_checked(4).ok_or("truncated header length")?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let (header, payload) = rest.split_at_checked(len).ok_or("truncated header")?;
    let header: Header = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    Ok(Batch {
        signal: header.signal,
        payload: Bytes::copy_from_slice(payload),
        items: header.items,
        checkpoints: header.checkpoints,
    })
}

fn read_header(path: &Path) -> Result<Header, String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    f.read_exact(&mut head).map_err(|e| e.to_string())?;
    if &head[..8] != MAGIC {
        return Err("not a spool file".into());
    }
    let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
    let mut header = vec![0u8; len.min(64 << 20)];
    f.read_exact(&mut header).map_err(|e| e.to_string())?;
    serde_json::from_slice(&header).map_err(|e| e.to_string())
}

impl Spool {
    /// Opens (creating) the spool in `dir`, holding at most `max_bytes`.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> std::io::Result<(Self, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let mut found: Vec<(u64, PathBuf, u64)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                // A write interrupted by a crash.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let Some(seq) = name
                .strip_suffix(SUFFIX)
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            found.push((seq, entry.path(), entry.metadata()?.len()));
        }
        found.sort_by_key(|(seq, _, _)| *seq);
        let mut spool = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            entries: VecDeque::new(),
            bytes: 0,
            next_seq: found.last().map_or(1, |(s, _, _)| s + 1),
            pinned: None,
        };
        let mut recovered = Recovered::default();
        for (seq, path, size) in found {
            match read_header(&path) {
                Ok(h) => {
                    for cp in h.checkpoints {
                        recovered.log_positions.insert(cp.key(), cp);
                    }
                    spool.entries.push_back(Entry {
                        seq,
                        size,
                        items: h.items,
                    });
                    spool.bytes += size;
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "unreadable spool file deleted");
                    recovered.corrupt += 1;
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok((spool, recovered))
    }

    /// Batches held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is spooled.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends a batch, dropping the oldest batches (except the one being sent) to make room.
    /// A batch bigger than the whole spool is dropped itself.
    pub(crate) fn push(&mut self, batch: &Batch) -> std::io::Result<Dropped> {
        let data = encode(batch)?;
        let size = data.len() as u64;
        let mut dropped = Dropped::default();
        if size > self.max_bytes {
            return Ok(Dropped {
                batches: 1,
                items: batch.items,
            });
        }
        while self.bytes + size > self.max_bytes {
            let victim = self.entries.iter().position(|e| Some(e.seq) != self.pinned);
            let Some(i) = victim else { break };
            let Some(e) = self.entries.remove(i) else {
                break;
            };
            self.bytes -= e.size;
            dropped.batches += 1;
            dropped.items += e.items;
            if let Err(err) = std::fs::remove_file(self.path(e.seq)) {
                tracing::warn!(error = %err, "cannot delete a dropped spool file");
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let tmp = self.dir.join(format!("{}.tmp", file_name(seq)));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&data)?;
        }
        std::fs::rename(&tmp, self.path(seq))?;
        self.entries.push_back(Entry {
            seq,
            size,
            items: batch.items,
        });
        self.bytes += size;
        Ok(dropped)
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(file_name(seq))
    }

    /// The oldest batch, pinned so that making room never deletes it while it is being sent.
    /// Unreadable files are deleted (and counted in the second value) and skipped.
    pub(crate) fn front(&mut self) -> (Option<(u64, Batch)>, Dropped) {
        let mut dropped = Dropped::default();
        while let Some(e) = self.entries.front().copied() {
            let read = std::fs::read(self.path(e.seq))
                .map_err(|e| e.to_string())
                .and_then(decode);
            match read {
                Ok(batch) => {
                    self.pinned = Some(e.seq);
                    return (Some((e.seq, batch)), dropped);
                }
                Err(err) => {
                    tracing::error!(seq = e.seq, error = %err, "unreadable spool file dropped");
                    self.entries.pop_front();
                    self.bytes -= e.size;
                    dropped.batches += 1;
                    dropped.items += e.items;
                    let _ = std::fs::remove_file(self.path(e.seq));
                }
            }
        }
        (None, dropped)
    }

    /// Removes a batch (acknowledged or refused for good).
    pub(crate) fn remove(&mut self, seq: u64) -> std::io::Result<()> {
        if self.pinned == Some(seq) {
            self.pinned = None;
        }
        if let Some(i) = self.entries.iter().position(|e| e.seq == seq)
            && let Some(e) = self.entries.remove(i)
        {
            self.bytes -= e.size;
            std::fs::remove_file(self.path(seq))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: u8, len: usize) -> Batch {
        Batch {
            signal: if n.is_multiple_of(2) {
                Signal::Metrics
            } else {
                Signal::Logs
            },
            payload: Bytes::from(vec![n; len]),
            items: u64::from(n),
            checkpoints: Vec::new(),
        }
    }

    fn payload_byte(b: &Batch) -> u8 {
        b.payload[0]
    }

    #[test]
    fn fifo_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 20).unwrap();
        for n in 1..=3 {
            assert_eq!(s.push(&batch(n, 100)).unwrap(), Dropped::default());
        }
        assert_eq!(s.len(), 3);
        let (front, _) = s.front();
        let (seq, b) = front.unwrap();
        assert_eq!(payload_byte(&b), 1);
        assert_eq!(b.signal, Signal::Logs);
        assert_eq!(b.items, 1);
        s.remove(seq).unwrap();
        drop(s);

        let (mut s, rec) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(rec.corrupt, 0);
        assert_eq!(s.len(), 2);
        let order: Vec<u8> = std::iter::from_fn(|| {
            let (front, _) = s.front();
            let (seq, b) = front?;
            s.remove(seq).unwrap();
            Some(payload_byte(&b))
        })
        .collect();
        assert_eq!(order, vec![2, 3]);
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
        // New batches continue the sequence after a reopen.
        s.push(&batch(4, 10)).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn full_spool_drops_the_oldest_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let one = encode(&batch(1, 1000)).unwrap().len() as u64;
        // Room for three batches.
        let (mut s, _) = Spool::open(dir.path(), one * 3 + 10).unwrap();
        for n in 1..=3 {
            s.push(&batch(n, 1000)).unwrap();
        }
        let d = s.push(&batch(4, 1000)).unwrap();
        assert_eq!(
            d,
            Dropped {
                batches: 1,
                items: 1
            }
        );
        assert!(s.bytes() <= one * 3 + 10);
        let (front, _) = s.front();
        assert_eq!(payload_byte(&front.unwrap().1), 2);
        // The batch being sent (pinned) is never the one dropped.
        let d = s.push(&batch(5, 1000)).unwrap();
        assert_eq!(
            d,
            Dropped {
                batches: 1,
                items: 3
            }
        );
        let (front, _) = s.front();
        assert_eq!(payload_byte(&front.unwrap().1), 2);
        // A batch bigger than the spool is refused, and nothing else is lost for it.
        let d = s.push(&batch(6, 10_000)).unwrap();
        assert_eq!(
            d,
            Dropped {
                batches: 1,
                items: 6
            }
        );
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn corrupt_files_are_skipped_and_log_positions_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = Spool::open(dir.path(), 1 << 20).unwrap();
        let cp = |offset| Checkpoint {
            dev: 1,
            ino: 2,
            path: "/x.log".into(),
            offset,
            fp_len: 0,
            fp: 0,
        };
        let mut b = batch(1, 10);
        b.checkpoints = vec![cp(100)];
        s.push(&b).unwrap();
        b.checkpoints = vec![cp(250)];
        s.push(&b).unwrap();
        s.push(&batch(2, 10)).unwrap();
        std::fs::write(dir.path().join(file_name(3)), b"garbage").unwrap();
        std::fs::write(dir.path().join("junk.tmp"), b"half").unwrap();
        drop(s);
        let (mut s, rec) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(rec.corrupt, 1);
        assert_eq!(rec.log_positions[&(1, 2)].offset, 250);
        assert_eq!(s.len(), 2);
        assert!(!dir.path().join("junk.tmp").exists());
        // A file that goes bad after opening is dropped when it comes to the front.
        std::fs::write(dir.path().join(file_name(1)), b"PSPOOL1\n\xff\xff").unwrap();
        let (front, d) = s.front();
        assert_eq!(d.batches, 1);
        assert_eq!(front.unwrap().1.checkpoints, vec![cp(250)]);
    }
}
