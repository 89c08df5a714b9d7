//! Persisted state: alerts, silences and the notification log, in one JSON file
//! (`alerting-state.json` in the state directory).
//!
//! Saving writes a temporary file, syncs it, renames it over the old one and syncs the
//! directory, so a crash leaves either the old or the new state. A missing file is an empty
//! state; a corrupt one is an error (the service moves it aside, logs a warning and starts
//! empty).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lifecycle::TrackedState;
use crate::nflog::NotificationLog;
use crate::silence::Silences;

/// The state file's name inside the state directory.
pub const FILE_NAME: &str = "alerting-state.json";
/// The format version written.
pub const VERSION: u32 = 1;

/// Everything that survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PersistedState {
    /// Format version.
    pub version: u32,
    /// When it was saved (wall clock, ms).
    pub saved_at_ms: i64,
    /// Alerts with their conditions.
    pub alerts: Vec<TrackedState>,
    /// Silences.
    pub silences: Silences,
    /// The notification log.
    pub nflog: NotificationLog,
}

/// The state file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join(FILE_NAME),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::StateIo {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Loads the state: `None` when there is no file yet.
    pub fn load(&self) -> Result<Option<PersistedState>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let state: PersistedState =
            serde_json::from_slice(&bytes).map_err(|e| Error::StateCorrupt {
                path: self.path.display().to_string(),
                reason: e.to_string(),
            })?;
        if state.version != VERSION {
            return Err(Error::StateCorrupt {
                path: self.path.display().to_string(),
                reason: format!(
                    "format version {} is not the supported {VERSION}",
                    state.version
                ),
            });
        }
        Ok(Some(state))
    }

    /// Serialises a state.
    pub fn encode(state: &PersistedState) -> Result<Vec<u8>> {
        serde_json::to_vec(state).map_err(|e| Error::StateCorrupt {
            path: String::new(),
            reason: format!("cannot encode the state: {e}"),
        })
    }

    /// Serialises a state from borrowed parts (the same JSON as [`PersistedState`]).
    pub fn encode_parts(
        saved_at_ms: i64,
        alerts: &[TrackedState],
        silences: &Silences,
        nflog: &NotificationLog,
    ) -> Result<Vec<u8>> {
        #[derive(Serialize)]
        struct Parts<'a> {
            version: u32,
            saved_at_ms: i64,
            alerts: &'a [TrackedState],
            silences: &'a Silences,
            nflog: &'a NotificationLog,
        }
        serde_json::to_vec(&Parts {
            version: VERSION,
            saved_at_ms,
            alerts,
            silences,
            nflog,
        })
        .map_err(|e| Error::StateCorrupt {
            path: String::new(),
            reason: format!("cannot encode the state: {e}"),
        })
    }

    /// Writes encoded state atomically (temporary file, fsync, rename, directory fsync).
    pub fn save_bytes(&self, bytes: &[u8]) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(|e| self.io(e))?;
            f.write_all(bytes).map_err(|e| self.io(e))?;
            f.sync_all().map_err(|e| self.io(e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Not every platform can sync a directory; the rename is what matters.
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Writes a state atomically.
    pub fn save(&self, state: &PersistedState) -> Result<()> {
        self.save_bytes(&Self::encode(state)?)
    }

    /// Moves a corrupt file aside (`alerting-state.json.corrupt-<ms>`), returning where.
    pub fn quarantine(&self, now_ms: i64) -> Result<PathBuf> {
        let to = self.path.with_extension(format!("json.corrupt-{now_ms}"));
        std::fs::rename(&self.path, &to).map_err(|e| self.io(e))?;
        Ok(to)
    }
}
