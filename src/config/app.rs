//! `app.*`: the HTTP server, logging and authentication, and the value types its options use
//! (listen address, secrets, token lists).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::scalar::Scalar;
use super::{ConfigError, duration};

/// `app.*`: HTTP server, logging and authentication.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppSettings {
    /// Listen address: `:8880`, `127.0.0.1:8880` or a bare port.
    pub port: ListenAddr,
    /// Public base URL sent to OnCall (derived from each request when empty).
    pub hostname: String,
    /// Log level: trace, debug, info, warn, error.
    pub log_level: String,
    /// File that log lines are appended to; stdout when empty.
    pub log_path: String,
    /// Version string reported in logs.
    pub version: String,
    /// Token(s) OnCall must present: one string or a list.
    pub auth_token: Tokens,
    /// Accept any token when none is configured (the original's behaviour); loudly discouraged.
    pub allow_any_token: bool,
    /// Token(s) for the admin API (`/api/admin/v1`); the admin API is off without one.
    pub admin_token: Tokens,
    /// Token(s) a scraper must present for `/metrics`; open to anyone when empty.
    pub metrics_token: Tokens,
    /// How often the gauges that need the database are sampled for `/metrics`.
    #[serde(with = "duration")]
    pub metrics_interval: Duration,
    /// Optional path prefix the API is also served under, e.g. `/oncall`.
    pub path_prefix: String,
    /// Longest time one request may take before it is answered with an error.
    #[serde(with = "duration")]
    pub write_timeout: Duration,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// After SIGTERM, longest wait for requests and deliveries in flight to finish.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for AppSettings {
    fn default() -> Self {
        AppSettings {
            port: ListenAddr(":8880".into()),
            hostname: String::new(),
            // The original defaulted to debug, which logs personal data (emails, numbers).
            log_level: "info".into(),
            log_path: String::new(),
            version: "1.0".into(),
            auth_token: Tokens::default(),
            allow_any_token: false,
            admin_token: Tokens::default(),
            metrics_token: Tokens::default(),
            metrics_interval: Duration::from_secs(10),
            path_prefix: String::new(),
            write_timeout: Duration::from_secs(60),
            body_limit: 256 * 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// A listen address in the original's Go style (`:8880` means every interface).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListenAddr(pub String);

impl ListenAddr {
    /// The address in a form `TcpListener::bind` accepts.
    pub fn socket_addr(&self) -> Result<String, ConfigError> {
        listen_addr(&self.0)
            .map_err(|message| ConfigError::Invalid(format!("option `app.port`: {message}")))
    }
}

fn listen_addr(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let addr = if let Some(port) = raw.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if raw.chars().all(|c| c.is_ascii_digit()) {
        format!("0.0.0.0:{raw}")
    } else {
        raw.to_string()
    };
    let port_ok = addr
        .rsplit_once(':')
        .map(|(_, p)| p.parse::<u16>().is_ok())
        .unwrap_or(false);
    if port_ok {
        Ok(addr)
    } else {
        Err(format!(
            "`{raw}` is not a listen address with a port from 0 to 65535 (use `:8880` or `127.0.0.1:8880`)"
        ))
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match Scalar::deserialize(d)? {
            s @ (Scalar::Text(_) | Scalar::Int(_)) => s.into_text().unwrap_or_default(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "`{}` is not a listen address (use `:8880` or `127.0.0.1:8880`)",
                    other.into_text().unwrap_or_default()
                )));
            }
        };
        listen_addr(&text).map_err(serde::de::Error::custom)?;
        Ok(ListenAddr(text))
    }
}

/// A secret string that never shows in `Debug` output or logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    /// The secret value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"***\"")
        }
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(d)? {
            s @ (Scalar::Text(_) | Scalar::Int(_)) => Ok(Secret(s.into_text().unwrap_or_default())),
            Scalar::Null => Ok(Secret::default()),
            _ => Err(serde::de::Error::custom("expected a string")),
        }
    }
}

/// One token or several, each accepted (several ease a rotation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tokens(pub Vec<Secret>);

impl<'de> Deserialize<'de> for Tokens {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<Secret>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a token or a list of tokens")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(vec![Secret(v.to_string())])
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(vec![Secret(v.to_string())])
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(vec![Secret(v.to_string())])
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Secret>()? {
                    out.push(s);
                }
                Ok(out)
            }
        }
        let list = d.deserialize_any(V)?;
        // Allow comma-separated lists in one environment variable.
        let tokens = list
            .into_iter()
            .flat_map(|s| {
                s.0.split(',')
                    .map(|t| Secret(t.trim().to_string()))
                    .collect::<Vec<_>>()
            })
            .filter(|s| !s.0.is_empty())
            .collect();
        Ok(Tokens(tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Settings;
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug() {
        let mut s = Settings::default();
        s.app.auth_token = Tokens(vec![Secret("hunter2".into())]);
        s.db.password = Secret("dbpass".into());
        let text = format!("{s:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("dbpass"),
            "{text}"
        );
    }
}
