//! Log file positions that the forecaster has acknowledged, kept in a JSON state file.
//!
//! A file is identified by device and inode (so a rename keeps its position) plus a
//! fingerprint of its first bytes (so a new file that reuses a deleted file's inode, or a file
//! truncated and rewritten between two polls, is recognised as new). The exporter applies a
//! batch's positions only after the forecaster acknowledged the batch; the file is replaced
//! atomically (write, fsync, rename).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Device and inode of a file.
pub(crate) type FileKey = (u64, u64);

/// How many leading bytes make a file's fingerprint.
pub(crate) const FINGERPRINT_BYTES: usize = 64;

/// A position in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Device number.
    pub(crate) dev: u64,
    /// Inode number.
    pub(crate) ino: u64,
    /// The path the file had (for people reading the state file).
    pub(crate) path: String,
    /// Bytes of the file that are acknowledged.
    pub(crate) offset: u64,
    /// How many leading bytes `fingerprint` covers (up to [`FINGERPRINT_BYTES`]).
    pub(crate) fp_len: u32,
    /// FNV-1a hash of those bytes.
    pub(crate) fp: u64,
}

impl Checkpoint {
    /// The file's identity.
    pub(crate) fn key(&self) -> FileKey {
        (self.dev, self.ino)
    }
}

/// FNV-1a, stable across releases and platforms (unlike `DefaultHasher`).
pub(crate) fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    files: Vec<Checkpoint>,
}

/// The acknowledged positions of the files being tailed.
#[derive(Debug)]
pub(crate) struct CheckpointStore {
    path: PathBuf,
    entries: HashMap<FileKey, Checkpoint>,
    live: HashSet<FileKey>,
    existed: bool,
}

impl CheckpointStore {
    /// Loads `path`. A missing file is an empty store; a corrupt one is set aside (renamed
    /// with a `.corrupt` suffix) and treated as missing, with an error logged.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let mut store = Self {
            path: path.to_path_buf(),
            entries: HashMap::new(),
            live: HashSet::new(),
            existed: false,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(store),
            Err(e) => return Err(e),
        };
        match serde_json::from_str::<StateFile>(&text) {
            Ok(state) => {
                store.existed = true;
                store.entries = state.files.into_iter().map(|c| (c.key(), c)).collect();
            }
            Err(e) => {
                let aside = path.with_extension("json.corrupt");
                tracing::error!(
                    path = %path.display(), error = %e, moved_to = %aside.display(),
                    "the log checkpoint file is corrupt; starting as on a first run"
                );
                std::fs::rename(path, &aside)?;
            }
        }
        Ok(store)
    }

    /// Whether a state file existed: files without a checkpoint then appeared while the agent
    /// was not running and are read from their beginning.
    pub(crate) fn existed(&self) -> bool {
        self.existed
    }

    /// The stored position of `key`.
    pub(crate) fn get(&self, key: FileKey) -> Option<&Checkpoint> {
        self.entries.get(&key)
    }

    /// Starts tracking a file: keeps its acknowledged position if it has one, else records
    /// `initial` (the position tailing starts from; nothing before it will be sent).
    pub(crate) fn track(&mut self, initial: Checkpoint) {
        let key = initial.key();
        self.live.insert(key);
        self.entries.entry(key).or_insert(initial);
    }

    /// Stops tracking a file that is gone.
    pub(crate) fn untrack(&mut self, key: FileKey) {
        self.live.remove(&key);
        self.entries.remove(&key);
    }

    /// Drops entries of files that were not found at start-up.
    pub(crate) fn retain_live(&mut self) {
        let live = &self.live;
        self.entries.retain(|k, _| live.contains(k));
    }

    /// Records acknowledged positions (of files still tracked) and saves the file.
    pub(crate) fn apply(&mut self, acked: &[Checkpoint]) -> std::io::Result<()> {
        let mut changed = false;
        for cp in acked {
            if self.live.contains(&cp.key()) && self.entries.get(&cp.key()) != Some(cp) {
                self.entries.insert(cp.key(), cp.clone());
                changed = true;
            }
        }
        if changed { self.save() } else { Ok(()) }
    }

    /// Writes the state file atomically.
    pub(crate) fn save(&mut self) -> std::io::Result<()> {
        let mut files: Vec<Checkpoint> = self.entries.values().cloned().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path).then(a.key().cmp(&b.key())));
        let body = serde_json::to_vec_pretty(&StateFile { version: 1, files })
            .map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_data()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        self.existed = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(ino: u64, offset: u64) -> Checkpoint {
        Checkpoint {
            dev: 1,
            ino,
            path: format!("/var/log/{ino}.log"),
            offset,
            fp_len: 3,
            fp: fingerprint(b"abc"),
        }
    }

    #[test]
    fn fingerprint_is_stable() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(fingerprint(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fingerprint(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fingerprint(b"ab"), fingerprint(b"ba"));
    }

    #[test]
    fn positions_survive_a_restart_and_only_acknowledged_ones_advance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.json");
        let mut s = CheckpointStore::open(&path).unwrap();
        assert!(!s.existed());
        s.track(cp(10, 0));
        s.track(cp(11, 500));
        s.save().unwrap();
        s.apply(&[cp(10, 120)]).unwrap();
        // A position for a file no longer tracked is ignored.
        s.apply(&[cp(99, 7)]).unwrap();

        let mut again = CheckpointStore::open(&path).unwrap();
        assert!(again.existed());
        assert_eq!(again.get((1, 10)).map(|c| c.offset), Some(120));
        assert_eq!(again.get((1, 11)).map(|c| c.offset), Some(500));
        assert_eq!(again.get((1, 99)), None);
        // Tracking a file keeps its acknowledged position.
        again.track(cp(10, 0));
        assert_eq!(again.get((1, 10)).map(|c| c.offset), Some(120));
        // Entries of files not found at start-up are dropped.
        again.retain_live();
        assert_eq!(again.get((1, 11)), None);
        // A truncated file moves back.
        again.apply(&[cp(10, 4)]).unwrap();
        assert_eq!(again.get((1, 10)).map(|c| c.offset), Some(4));
        again.untrack((1, 10));
        again.save().unwrap();
        let last = CheckpointStore::open(&path).unwrap();
        assert_eq!(last.get((1, 10)), None);
    }

    #[test]
    fn a_corrupt_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints.json");
        std::fs::write(&path, "{not json").unwrap();
        let s = CheckpointStore::open(&path).unwrap();
        assert!(!s.existed());
        assert!(dir.path().join("checkpoints.json.corrupt").exists());
        assert!(!path.exists());
    }
}
