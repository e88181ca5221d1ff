//! Serde helpers for durations written as `60s`, `1m30s`, `500ms` or a number of seconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

use super::scalar::Scalar;

/// Writes a duration as humantime text.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// Reads `60s`, `1m`, `250ms` or a number of seconds.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let bad = |shown: String| {
        serde::de::Error::custom(format!(
            "`{shown}` is not a duration; write e.g. `60s`, `5m`, `500ms` or a number of seconds"
        ))
    };
    match Scalar::deserialize(d)? {
        Scalar::Int(n) => u64::try_from(n)
            .map(Duration::from_secs)
            .map_err(|_| bad(n.to_string())),
        Scalar::Float(f) if f >= 0.0 && f.is_finite() && f < 1e15 => Ok(Duration::from_secs_f64(f)),
        Scalar::Float(f) => Err(bad(f.to_string())),
        Scalar::Text(t) => humantime::parse_duration(t.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{t}` is not a duration ({e}); write e.g. `60s`, `5m`, `500ms`"
            ))
        }),
        other => Err(bad(other.into_text().unwrap_or_default())),
    }
}

/// The same for an optional duration (`None` when absent or null).
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes a present duration as humantime text.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    /// Reads an optional duration written as for [`super::deserialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super")] Duration);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(d)| d))
    }
}
