//! Silences: alerts whose labels match a silence's matchers are not notified while the silence
//! is active (between `startsAt` and `endsAt`, wall-clock time).
//!
//! The API shape follows Alertmanager's v2: matchers are `{name, value, isRegex, isEqual}`
//! (a PromQL selector string such as `{alertname="DiskWillFill"}` is accepted too), times are
//! RFC 3339, and the state is `pending`, `active` or `expired`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::matcher::{LabelMatcher, MatcherSpec, Selector};
use crate::signal::LabelSet;
use crate::template::timestamp;

/// Expired silences are kept (listed) this long after they end, then dropped.
pub const EXPIRED_RETENTION_MS: i64 = 5 * 24 * 3600 * 1000;
/// Most silences kept; creating more is refused.
pub const MAX_SILENCES: usize = 10_000;

/// A silence's state at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SilenceState {
    /// Starts in the future.
    Pending,
    /// Mutes matching alerts now.
    Active,
    /// Ended.
    Expired,
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Random id (32 hex digits, UUID-like).
    pub id: String,
    /// All must match for an alert to be silenced.
    pub matchers: Vec<LabelMatcher>,
    /// Start (wall clock, ms since the epoch).
    pub starts_at_ms: i64,
    /// End (wall clock, ms since the epoch).
    pub ends_at_ms: i64,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// Last change (wall clock, ms).
    pub updated_at_ms: i64,
}

impl Silence {
    /// The state at `now_ms` (wall clock).
    pub fn state(&self, now_ms: i64) -> SilenceState {
        if now_ms >= self.ends_at_ms {
            SilenceState::Expired
        } else if now_ms < self.starts_at_ms {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    /// Whether the silence's matchers match `labels` (whatever its state).
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// Alertmanager's API v2 JSON of the silence (`gettableSilence`).
    pub fn to_api_json(&self, now_ms: i64) -> serde_json::Value {
        let state = match self.state(now_ms) {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        };
        serde_json::json!({
            "id": self.id,
            "matchers": self.matchers,
            "startsAt": timestamp(self.starts_at_ms),
            "endsAt": timestamp(self.ends_at_ms),
            "updatedAt": timestamp(self.updated_at_ms),
            "createdBy": self.created_by,
            "comment": self.comment,
            "status": { "state": state },
        })
    }
}

/// Matchers as the API accepts them: Alertmanager's list, or a selector string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MatchersInput {
    /// `[{"name": …, "value": …, "isRegex": …, "isEqual": …}]`
    List(Vec<MatcherSpec>),
    /// `{alertname="DiskWillFill",host_name=~"web-.*"}`
    Selector(String),
}

/// A time as the API accepts it: RFC 3339 text or milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimeInput {
    /// Milliseconds since the epoch.
    Millis(i64),
    /// RFC 3339 (`2024-05-01T12:00:00Z`).
    Text(String),
}

impl TimeInput {
    fn to_ms(&self, field: &str) -> Result<i64> {
        match self {
            Self::Millis(ms) => Ok(*ms),
            Self::Text(t) => humantime::parse_rfc3339(t)
                .or_else(|_| humantime::parse_rfc3339_weak(t))
                .map_err(|e| {
                    Error::Silence(format!("`{field}`: `{t}` is not an RFC 3339 time: {e}"))
                })
                .and_then(|st| {
                    st.duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() as i64)
                        .map_err(|_| Error::Silence(format!("`{field}`: `{t}` is before 1970")))
                }),
        }
    }
}

/// A silence to create (`POST /api/v1/silences`). With an `id` of an existing silence, that
/// silence is replaced (Alertmanager expires the old one and creates a new one; here the id is
/// kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SilenceSpec {
    /// Replace this silence.
    #[serde(default)]
    pub id: Option<String>,
    /// Which alerts it mutes.
    pub matchers: MatchersInput,
    /// Start; default now.
    #[serde(default)]
    pub starts_at: Option<TimeInput>,
    /// End; required unless `duration` is given.
    #[serde(default)]
    pub ends_at: Option<TimeInput>,
    /// Length from the start, as `2h` or `30m`, instead of `endsAt`.
    #[serde(default)]
    pub duration: Option<String>,
    /// Who creates it.
    #[serde(default)]
    pub created_by: String,
    /// Why.
    #[serde(default)]
    pub comment: String,
}

/// The silences.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Silences {
    by_id: BTreeMap<String, Silence>,
}

fn new_id() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    let h = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Silences {
    /// No silences.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates (or replaces) a silence; returns its id.
    pub fn create(&mut self, spec: &SilenceSpec, now_ms: i64) -> Result<String> {
        let matchers: Vec<LabelMatcher> = match &spec.matchers {
            MatchersInput::List(list) => list
                .iter()
                .map(LabelMatcher::try_from)
                .collect::<Result<_>>()
                .map_err(|e| Error::Silence(e.to_string()))?,
            MatchersInput::Selector(text) => {
                let sel =
                    Selector::parse_for_alerts(text).map_err(|e| Error::Silence(e.to_string()))?;
                match sel.alternatives() {
                    [one] => one.clone(),
                    _ => {
                        return Err(Error::Silence(
                            "a silence takes one list of matchers, not `or`".into(),
                        ));
                    }
                }
            }
        };
        if matchers.is_empty() {
            return Err(Error::Silence("needs at least one matcher".into()));
        }
        if matchers.iter().all(|m| m.matches_value("")) {
            return Err(Error::Silence(
                "at least one matcher must not match the empty string (it would silence \
                 everything)"
                    .into(),
            ));
        }
        let starts = match &spec.starts_at {
            Some(t) => t.to_ms("startsAt")?,
            None => now_ms,
        };
        let ends = match (&spec.ends_at, &spec.duration) {
            (Some(t), None) => t.to_ms("endsAt")?,
            (None, Some(d)) => {
                let d = humantime::parse_duration(d)
                    .map_err(|e| Error::Silence(format!("`duration`: `{d}`: {e}")))?;
                starts.saturating_add(d.as_millis() as i64)
            }
            (Some(_), Some(_)) => {
                return Err(Error::Silence(
                    "give `endsAt` or `duration`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(Error::Silence(
                    "`endsAt` (or `duration`) is required".into(),
                ));
            }
        };
        if ends <= starts {
            return Err(Error::Silence("`endsAt` must be after `startsAt`".into()));
        }
        if ends <= now_ms {
            return Err(Error::Silence("`endsAt` is in the past".into()));
        }
        let id = match &spec.id {
            Some(id) if self.by_id.contains_key(id) => id.clone(),
            Some(id) => return Err(Error::SilenceNotFound(id.clone())),
            None => {
                self.gc(now_ms);
                if self.by_id.len() >= MAX_SILENCES {
                    return Err(Error::Silence(format!(
                        "too many silences (at most {MAX_SILENCES}); expire some first"
                    )));
                }
                new_id()
            }
        };
        self.by_id.insert(
            id.clone(),
            Silence {
                id: id.clone(),
                matchers,
                starts_at_ms: starts,
                ends_at_ms: ends,
                created_by: spec.created_by.clone(),
                comment: spec.comment.clone(),
                updated_at_ms: now_ms,
            },
        );
        Ok(id)
    }

    /// Expires a silence now (a pending one never starts).
    pub fn expire(&mut self, id: &str, now_ms: i64) -> Result<()> {
        let s = self
            .by_id
            .get_mut(id)
            .ok_or_else(|| Error::SilenceNotFound(id.to_string()))?;
        if s.state(now_ms) == SilenceState::Expired {
            return Ok(());
        }
        if s.starts_at_ms > now_ms {
            s.starts_at_ms = now_ms;
        }
        s.ends_at_ms = now_ms;
        s.updated_at_ms = now_ms;
        Ok(())
    }

    /// One silence.
    pub fn get(&self, id: &str) -> Option<&Silence> {
        self.by_id.get(id)
    }

    /// Every silence kept, newest first.
    pub fn list(&self) -> Vec<Silence> {
        let mut v: Vec<Silence> = self.by_id.values().cloned().collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.updated_at_ms));
        v
    }

    /// Ids of the active silences that mute `labels` at `now_ms`.
    pub fn muting(&self, labels: &LabelSet, now_ms: i64) -> Vec<String> {
        self.by_id
            .values()
            .filter(|s| s.state(now_ms) == SilenceState::Active && s.matches(labels))
            .map(|s| s.id.clone())
            .collect()
    }

    /// The earliest future start or end of a silence (wall ms): when muting may change.
    pub fn next_change(&self, now_ms: i64) -> Option<i64> {
        self.by_id
            .values()
            .flat_map(|s| [s.starts_at_ms, s.ends_at_ms])
            .filter(|t| *t > now_ms)
            .min()
    }

    /// Drops silences expired for longer than [`EXPIRED_RETENTION_MS`].
    pub fn gc(&mut self, now_ms: i64) {
        self.by_id
            .retain(|_, s| now_ms.saturating_sub(s.ends_at_ms) <= EXPIRED_RETENTION_MS);
    }

    /// How many silences are kept.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// No silences kept.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
