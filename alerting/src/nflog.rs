//! The notification log: per (group key, receiver), which alerts were last notified as firing
//! and as resolved, and when. It decides whether a group needs a notification (Alertmanager's
//! dedup rules) and makes restarts neither lose nor repeat notifications: an entry is written
//! only after the receiver accepted the notification, and it is persisted with the state.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// Entries not updated for this long (wall clock) are dropped.
pub const RETENTION_MS: i64 = 5 * 24 * 3600 * 1000;
/// Most entries kept; the oldest go first.
pub const MAX_ENTRIES: usize = 100_000;

/// What was last sent to one receiver for one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Fingerprints notified as firing.
    pub firing: BTreeSet<String>,
    /// Fingerprints notified as resolved.
    pub resolved: BTreeSet<String>,
    /// When (wall clock, ms).
    pub sent_at_ms: i64,
}

/// Whether a group needs a notification now, given what was last sent.
///
/// - never notified: when something fires, or (with `send_resolved`) when alerts fired and
///   resolved before the group's first notification;
/// - an alert fires that was not notified as firing: yes;
/// - nothing fires any more: yes if the last notification had firing alerts (whether or not
///   resolved alerts are sent, so the log forgets them), no otherwise;
/// - with `send_resolved`, an alert resolved that was not notified as resolved: yes;
/// - otherwise only once `repeat_interval` passed since the last notification.
pub fn needs_update(
    entry: Option<&Entry>,
    firing: &BTreeSet<String>,
    resolved: &BTreeSet<String>,
    send_resolved: bool,
    repeat_interval_ms: i64,
    now_ms: i64,
) -> bool {
    let Some(e) = entry else {
        // An alert that fired and resolved before its group's first notification (a short
        // incident, or a replay at full speed) is still reported, as resolved.
        return !firing.is_empty() || (send_resolved && !resolved.is_empty());
    };
    if !firing.is_subset(&e.firing) {
        return true;
    }
    if firing.is_empty() {
        return !e.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&e.resolved) {
        return true;
    }
    now_ms - e.sent_at_ms >= repeat_interval_ms
}

/// The log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NotificationLog {
    entries: HashMap<String, HashMap<String, Entry>>,
}

impl NotificationLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// What was last sent for a group to a receiver.
    pub fn get(&self, group_key: &str, receiver: &str) -> Option<&Entry> {
        self.entries.get(group_key)?.get(receiver)
    }

    /// Records a notification the receiver accepted (or that needed no delivery).
    pub fn record(&mut self, group_key: &str, receiver: &str, entry: Entry) {
        self.entries
            .entry(group_key.to_string())
            .or_default()
            .insert(receiver.to_string(), entry);
        if self.len() > MAX_ENTRIES {
            self.drop_oldest();
        }
    }

    /// Whether any receiver's last notification of the group has `fingerprint` firing.
    pub fn any_firing(&self, group_key: &str, fingerprint: &str) -> bool {
        self.entries
            .get(group_key)
            .is_some_and(|m| m.values().any(|e| e.firing.contains(fingerprint)))
    }

    /// Drops entries older than [`RETENTION_MS`].
    pub fn gc(&mut self, now_ms: i64) {
        for m in self.entries.values_mut() {
            m.retain(|_, e| now_ms.saturating_sub(e.sent_at_ms) <= RETENTION_MS);
        }
        self.entries.retain(|_, m| !m.is_empty());
    }

    fn drop_oldest(&mut self) {
        let mut times: Vec<i64> = self
            .entries
            .values()
            .flat_map(|m| m.values().map(|e| e.sent_at_ms))
            .collect();
        times.sort_unstable();
        let cut = times[times.len() / 10];
        for m in self.entries.values_mut() {
            m.retain(|_, e| e.sent_at_ms > cut);
        }
        self.entries.retain(|_, m| !m.is_empty());
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.values().map(HashMap::len).sum()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
