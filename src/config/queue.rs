//! The delivery sections: `queue.*` (the durable queue), `limits.*` and `dedup.*` (what it
//! lets through), `push.*` and `heartbeat.*` (where pushes and heartbeat alerts go) and
//! `directory.*` (how soon user changes are seen).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

/// `queue.*`: the durable notification queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Deliveries in flight at once in this process.
    pub concurrency: usize,
    /// Attempts before a notification is marked failed.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each time.
    #[serde(with = "duration")]
    pub retry_base: Duration,
    /// Longest delay between retries.
    #[serde(with = "duration")]
    pub retry_max: Duration,
    /// How long a claimed notification stays with its worker before another may take it.
    #[serde(with = "duration")]
    pub lease: Duration,
    /// How often idle workers look for due notifications written by other processes.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// Longest wait for an accepted notification to be committed before answering 503.
    #[serde(with = "duration")]
    pub accept_timeout: Duration,
    /// Most notifications committed in one transaction.
    pub batch_size: usize,
    /// Concurrent commits of accepted notifications.
    pub writers: usize,
    /// Run delivery workers in this process.
    pub deliver: bool,
    /// Delivered and failed notifications older than this are deleted (0 keeps them forever).
    #[serde(with = "duration")]
    pub retention: Duration,
    /// Deliveries in flight at once per backend, so that a hung backend holds only its own
    /// share of `concurrency`; 0: half of `concurrency` (at least 1).
    pub backend_concurrency: usize,
    /// Per backend name, its own limit instead of `backend_concurrency`.
    pub backend_limits: BTreeMap<String, usize>,
    /// Failures in a row (timeouts, 5xx, connection errors) after which a backend is skipped
    /// for `breaker_cooldown`; 0 turns the circuit breaker off.
    pub breaker_failures: u32,
    /// How long a backend is skipped once its breaker opened; then one probe is let through.
    #[serde(with = "duration")]
    pub breaker_cooldown: Duration,
}

impl QueueSettings {
    /// The bulkhead of backend `name`: how many of its deliveries may be in flight at once.
    pub fn backend_limit(&self, name: &str) -> usize {
        let default = match self.backend_concurrency {
            0 => self.concurrency / 2,
            n => n,
        };
        self.backend_limits
            .get(name)
            .copied()
            .unwrap_or(default)
            .max(1)
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            concurrency: 128,
            max_attempts: 12,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            accept_timeout: Duration::from_secs(4),
            batch_size: 256,
            writers: 2,
            deliver: true,
            retention: Duration::from_secs(30 * 24 * 3600),
            backend_concurrency: 0,
            backend_limits: BTreeMap::new(),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

/// `directory.*`: the user directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectorySettings {
    /// How often a server notices directory changes made by other processes.
    #[serde(with = "duration")]
    pub refresh_interval: Duration,
}

impl Default for DirectorySettings {
    fn default() -> Self {
        DirectorySettings {
            refresh_interval: Duration::from_secs(1),
        }
    }
}

/// `push.*`: where mobile pushes go.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushSettings {
    /// Backend for pushes to devices assigned to a user; empty: `plugin.backend`.
    pub backend: String,
    /// Backend for pushes to unassigned devices (e.g. a team chat webhook); empty: `push.backend`.
    pub fallback_backend: String,
}

/// `limits.*`: caps per kind over a sliding window, per user and for the whole installation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSettings {
    /// The window the caps count over.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Phone calls.
    pub call: Cap,
    /// Text messages.
    pub sms: Cap,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        LimitsSettings {
            window: Duration::from_secs(24 * 3600),
            call: Cap::default(),
            sms: Cap::default(),
        }
    }
}

/// One kind's caps; 0 means no cap.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cap {
    /// Most per user within the window.
    pub per_user: u64,
    /// Most for everybody together within the window.
    pub total: u64,
}

/// `dedup.*`: the same user, kind and message again within the window is recorded as a
/// duplicate and not delivered.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupSettings {
    /// 0 turns it off.
    #[serde(with = "duration")]
    pub window: Duration,
}

/// `heartbeat.*`: watching OnCall's own heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatSettings {
    /// Silence after which OnCall is reported as down.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// How often silence is checked.
    #[serde(with = "duration")]
    pub check_interval: Duration,
    /// Who is told (emails or ids); empty: every active admin in the directory.
    pub notify_users: Vec<String>,
    /// Backend for these alerts; empty: `plugin.backend`.
    pub backend: String,
}

impl Default for HeartbeatSettings {
    fn default() -> Self {
        HeartbeatSettings {
            timeout: Duration::from_secs(600),
            check_interval: Duration::from_secs(15),
            notify_users: Vec::new(),
            backend: String::new(),
        }
    }
}
