//! `console.*`: the web console served under `app.path_prefix`.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, duration};

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

impl ConsoleSettings {
    /// Checks the options a typo would silently break.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if axum::http::HeaderName::from_bytes(self.trusted_header.as_bytes()).is_err() {
            return Err(ConfigError::Invalid(format!(
                "option `console.trusted_header`: `{}` is not a header name",
                self.trusted_header
            )));
        }
        for (option, value) in [
            ("console.session_ttl", self.session_ttl),
            ("console.code_ttl", self.code_ttl),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Invalid(format!(
                    "option `{option}`: must be longer than 0s"
                )));
            }
        }
        if self.code_attempts == 0 || self.codes_per_hour == 0 {
            return Err(ConfigError::Invalid(
                "options `console.code_attempts` and `console.codes_per_hour`: must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_header_name_or_zero_limits_are_refused() {
        assert!(ConsoleSettings::default().validate().is_ok());
        let bad_header = ConsoleSettings {
            trusted_header: "X Bad: header".into(),
            ..ConsoleSettings::default()
        };
        let err = bad_header.validate().expect_err("bad header");
        assert!(err.to_string().contains("console.trusted_header"), "{err}");
        let no_codes = ConsoleSettings {
            codes_per_hour: 0,
            ..ConsoleSettings::default()
        };
        assert!(no_codes.validate().is_err());
        let no_sessions = ConsoleSettings {
            session_ttl: Duration::ZERO,
            ..ConsoleSettings::default()
        };
        assert!(no_sessions.validate().is_err());
    }
}
