//! `console.*`: the web console served under `app.path_prefix`.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;

/// `console.*`: sign-in and sessions of the web console.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Serves the console and the profile pages OnCall links to.
    pub enabled: bool,
    /// How long a sign-in lasts.
    #[serde(with = "duration")]
    pub session_ttl: Duration,
    /// How long a one-time code (sign-in, phone verification) stays valid.
    #[serde(with = "duration")]
    pub code_ttl: Duration,
    /// Most codes sent to one person per hour.
    pub codes_per_hour: u32,
    /// Most wrong guesses of one code before it is void.
    pub code_attempts: u32,
    /// Addresses of reverse proxies whose `trusted_header` names the signed-in person;
    /// empty: the header is ignored.
    pub trusted_proxies: Vec<IpAddr>,
    /// The header a trusted proxy sets to the person's email or username.
    pub trusted_header: String,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            enabled: true,
            session_ttl: Duration::from_secs(12 * 3600),
            code_ttl: Duration::from_secs(600),
            codes_per_hour: 5,
            code_attempts: 5,
            trusted_proxies: Vec::new(),
            trusted_header: "X-WEBAUTH-USER".into(),
        }
    }
}
