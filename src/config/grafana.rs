//! `grafana.*`: Grafana and OnCall connection details, and the tracked schedules
//! (`grafana.oncall.schedules.<KEY>`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::app::Secret;
use super::duration;

/// `grafana.*`: connection to Grafana and OnCall.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrafanaSettings {
    /// Grafana base URL.
    pub url: String,
    /// Credentials sent to Grafana in the `Authorization` header.
    pub header_token: Secret,
    /// OnCall connection and tracked schedules.
    pub oncall: OncallSettings,
}

/// `grafana.oncall.*`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OncallSettings {
    /// OnCall base URL.
    pub url: String,
    /// OnCall API token: sent to OnCall's public API and with iCal fetches.
    pub header_token: Secret,
    /// What OnCall's outgoing webhooks must send as `Authorization` to `/hooks/oncall`;
    /// empty: the webhook receiver is off.
    pub webhook_token: Secret,
    /// Load more details about incidents from OnCall.
    pub incident_details: bool,
    /// Schedules to track, by key.
    pub schedules: BTreeMap<String, ScheduleSettings>,
    /// How often every tracked schedule's iCal export is fetched.
    #[serde(with = "duration")]
    pub schedule_poll_interval: Duration,
    /// Remind people this long before their shift starts (`local` transport); 0 = off.
    #[serde(with = "duration")]
    pub schedule_reminder: Duration,
}

impl Default for OncallSettings {
    fn default() -> Self {
        OncallSettings {
            url: String::new(),
            header_token: Secret::default(),
            webhook_token: Secret::default(),
            incident_details: false,
            schedules: BTreeMap::new(),
            schedule_poll_interval: Duration::from_secs(60),
            schedule_reminder: Duration::ZERO,
        }
    }
}

/// `grafana.oncall.schedules.<KEY>.*`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Display name (the calendar's own name overrides it).
    pub name: String,
    /// iCal export URL, or a path appended to `grafana.oncall.url`.
    pub ical_url: String,
    /// `local` or `callback`.
    pub transport: Option<String>,
    /// The original's code read this key instead of `transport`.
    pub notify: Option<String>,
    /// Where the `callback` transport posts.
    pub callback_url: String,
    /// Extra request headers for the iCal URL (e.g. `Authorization`); without one,
    /// `grafana.oncall.header_token` is sent as `Authorization` when set and the URL is on
    /// `grafana.oncall.url`'s origin.
    pub headers: BTreeMap<String, String>,
}
