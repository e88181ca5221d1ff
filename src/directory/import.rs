//! Reading users from CSV and YAML files for `users import`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{DirectoryError, NewUser, UserPatch};
use crate::config::Scalar;

/// File formats `users import` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// Comma-separated with a header row.
    Csv,
    /// A list of users, or a map with a `users` list.
    Yaml,
}

impl ImportFormat {
    /// Guesses the format from the file extension.
    pub fn from_path(path: &Path) -> Option<ImportFormat> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => Some(ImportFormat::Csv),
            Some("yml" | "yaml" | "json") => Some(ImportFormat::Yaml),
            _ => None,
        }
    }
}

/// One user record in an import file; only `email` is required.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRow {
    /// Public id kept as is (for users moving from another system).
    #[serde(default, alias = "user_id", deserialize_with = "empty_as_none")]
    pub id: Option<String>,
    /// Email, the key that makes the import idempotent.
    pub email: String,
    /// Display name.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub name: Option<String>,
    /// Username.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub username: Option<String>,
    /// Phone number; an empty cell leaves the phone as it is.
    #[serde(default, alias = "phone", deserialize_with = "empty_as_none")]
    pub phone_number: Option<String>,
    /// Role name.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub role: Option<String>,
    /// Active flag (`true`/`false`, `1`/`0`, `yes`/`no`).
    #[serde(default, deserialize_with = "flexible_bool")]
    pub active: Option<bool>,
    /// IANA time zone.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub timezone: Option<String>,
    /// Language tag (`de`, `pt-BR`).
    #[serde(default, deserialize_with = "empty_as_none")]
    pub language: Option<String>,
}

impl ImportRow {
    pub(super) fn into_new(self) -> NewUser {
        NewUser {
            id: self.id,
            email: self.email,
            name: self.name,
            username: self.username,
            phone_number: self.phone_number,
            role: self.role,
            active: self.active,
            timezone: self.timezone,
            language: self.language,
            contacts: Default::default(),
        }
    }

    pub(super) fn into_patch(self) -> UserPatch {
        UserPatch {
            email: None,
            name: self.name,
            username: self.username,
            phone_number: self.phone_number.map(Some),
            role: self.role,
            active: self.active,
            timezone: self.timezone,
            language: self.language,
            contacts: Default::default(),
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// New users.
    pub added: usize,
    /// Existing users whose fields changed.
    pub updated: usize,
    /// Existing users already up to date.
    pub unchanged: usize,
}

/// A record a migration left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Which record (as the source names it).
    pub record: String,
    /// Why it was not imported.
    pub reason: String,
}

/// What a migration did: each record added, updated, unchanged or skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MigrationReport {
    /// Emails of new users.
    pub added: Vec<String>,
    /// Emails of existing users whose fields changed.
    pub updated: Vec<String>,
    /// Existing users already up to date.
    pub unchanged: usize,
    /// Records left out.
    pub skipped: Vec<Skipped>,
    /// Things imported with a caveat (an existing user keeps its own id).
    pub notes: Vec<String>,
}

/// Reads the Go service's `oncall_users` table from its PostgreSQL database: one record per
/// row, labelled with the row's `id`, `user_id` kept as the public id.
pub async fn read_emu_oncall(url: &str) -> Result<Vec<(String, ImportRow)>, DirectoryError> {
    use sqlx::{Connection, Row};
    crate::install_crypto_provider();
    // The URL may hold a password: never repeat it.
    let fail = |message: String| DirectoryError::Import {
        path: "the Go service's oncall_users table".into(),
        message,
    };
    let mut conn = sqlx::postgres::PgConnection::connect(url)
        .await
        .map_err(|e| fail(format!("cannot connect: {e}")))?;
    let rows = sqlx::query(
        "SELECT id::bigint AS id, user_id::text AS user_id, name::text AS name,          username::text AS username, email::text AS email, phone_number::text AS phone_number,          active, role::text AS role FROM oncall_users ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| fail(e.to_string()))?;
    let _ = conn.close().await;
    let text =
        |row: &sqlx::postgres::PgRow, column: &str| -> Result<Option<String>, DirectoryError> {
            let value: Option<String> = row
                .try_get(column)
                .map_err(|e| fail(format!("column {column}: {e}")))?;
            Ok(value
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()))
        };
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row
            .try_get("id")
            .map_err(|e| fail(format!("column id: {e}")))?;
        let user_id = text(row, "user_id")?;
        let email = text(row, "email")?;
        let label = format!(
            "oncall_users id {seq} ({})",
            email
                .as_deref()
                .or(user_id.as_deref())
                .unwrap_or("no email")
        );
        let active: Option<bool> = row
            .try_get("active")
            .map_err(|e| fail(format!("column active: {e}")))?;
        records.push((
            label,
            ImportRow {
                id: user_id,
                email: email.unwrap_or_default(),
                name: text(row, "name")?,
                username: text(row, "username")?,
                phone_number: text(row, "phone_number")?,
                role: text(row, "role")?,
                active,
                timezone: None,
                language: None,
            },
        ));
    }
    Ok(records)
}

fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Text(s) if s.trim().is_empty() => Ok(None),
        s @ (Scalar::Text(_) | Scalar::Int(_)) => Ok(s.into_text()),
        Scalar::Null => Ok(None),
        other => Err(serde::de::Error::custom(format!(
            "expected text, found `{}`",
            other.into_text().unwrap_or_default()
        ))),
    }
}

fn flexible_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Scalar::deserialize(d)? {
        Scalar::Null => Ok(None),
        Scalar::Bool(b) => Ok(Some(b)),
        Scalar::Int(n) => Ok(Some(n != 0)),
        Scalar::Float(f) => Err(serde::de::Error::custom(format!(
            "`{f}` is not true or false"
        ))),
        Scalar::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "true" | "t" | "yes" | "y" | "1" => Ok(Some(true)),
            "false" | "f" | "no" | "n" | "0" => Ok(Some(false)),
            other => Err(serde::de::Error::custom(format!(
                "`{other}` is not true or false"
            ))),
        },
    }
}

/// Reads record `index` (from 0), naming the record and, for a bad value, the field.
fn read_record(value: serde_json::Value, index: usize) -> Result<ImportRow, String> {
    let err = match serde_json::from_value::<ImportRow>(value.clone()) {
        Ok(row) => return Ok(row),
        Err(e) => e,
    };
    let record = index + 1;
    // serde_json names unknown and missing fields itself, but not the field of a bad value:
    // find it by reading each field alone.
    if let serde_json::Value::Object(map) = &value {
        for (key, field) in map {
            let mut alone = serde_json::Map::new();
            alone.insert("email".into(), "probe@example.com".into());
            alone.insert(key.clone(), field.clone());
            if let Err(e) = serde_json::from_value::<ImportRow>(serde_json::Value::Object(alone)) {
                return Err(format!("record {record}, field `{key}`: {e}"));
            }
        }
    } else {
        return Err(format!(
            "record {record}: expected a user (a map with at least `email`)"
        ));
    }
    Err(format!("record {record}: {err}"))
}

/// Reads import records from `text` in the given format.
pub fn parse_import(
    text: &str,
    format: ImportFormat,
    path: &str,
) -> Result<Vec<ImportRow>, DirectoryError> {
    let fail = |message: String| DirectoryError::Import {
        path: path.to_string(),
        message,
    };
    match format {
        ImportFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .trim(csv::Trim::All)
                .from_reader(text.as_bytes());
            let headers = reader
                .headers()
                .map_err(|e| fail(format!("header row: {e}")))?
                .clone();
            let mut rows = Vec::new();
            for (i, record) in reader.records().enumerate() {
                let record = record.map_err(|e| fail(format!("record {}: {e}", i + 1)))?;
                // Cells stay text: csv's own typing would read `+4930123456` as a number and
                // drop the plus.
                let map: serde_json::Map<String, serde_json::Value> = headers
                    .iter()
                    .zip(record.iter())
                    .map(|(h, v)| (h.to_string(), serde_json::Value::String(v.to_string())))
                    .collect();
                rows.push(read_record(serde_json::Value::Object(map), i).map_err(fail)?);
            }
            Ok(rows)
        }
        ImportFormat::Yaml => {
            // Each shape is recognised first and each record read on its own, so that an
            // error names the record and the field (an untagged enum would only say that
            // no shape matched).
            let doc: yaml_serde::Value =
                yaml_serde::from_str(text).map_err(|e| fail(e.to_string()))?;
            let list = match doc {
                yaml_serde::Value::Sequence(list) => list,
                yaml_serde::Value::Mapping(mut map) => {
                    let extra: Vec<String> = map
                        .keys()
                        .filter(|k| k.as_str() != Some("users"))
                        .map(|k| {
                            yaml_serde::to_string(k)
                                .unwrap_or_default()
                                .trim()
                                .to_string()
                        })
                        .collect();
                    if !extra.is_empty() {
                        return Err(fail(format!(
                            "unknown key `{}` at the top level: expected a list of users, or `users:` with that list",
                            extra.join("`, `")
                        )));
                    }
                    match map.remove("users") {
                        Some(yaml_serde::Value::Sequence(list)) => list,
                        Some(yaml_serde::Value::Null) => Vec::new(),
                        _ => return Err(fail("`users` must be a list of users".into())),
                    }
                }
                yaml_serde::Value::Null => Vec::new(),
                _ => {
                    return Err(fail(
                        "expected a list of users, or `users:` with that list".into(),
                    ));
                }
            };
            list.into_iter()
                .enumerate()
                .map(|(i, value)| {
                    let value = serde_json::to_value(value)
                        .map_err(|e| fail(format!("record {}: {e}", i + 1)))?;
                    read_record(value, i).map_err(fail)
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_partial_columns() {
        let rows = parse_import(
            "email,phone,name,role,active\nA@x.com,+4930123456,Ann,admin,yes\nb@x.com,,,,\n",
            ImportFormat::Csv,
            "u.csv",
        )
        .expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].phone_number.as_deref(), Some("+4930123456"));
        assert_eq!(rows[0].active, Some(true));
        assert_eq!(rows[1].phone_number, None);
        assert_eq!(rows[1].active, None);
    }

    #[test]
    fn yaml_list_or_wrapped() {
        let a = parse_import(
            "- email: a@x.com\n  phone_number: '+4930123456'\n",
            ImportFormat::Yaml,
            "u.yml",
        )
        .expect("list");
        let b = parse_import("users:\n  - email: a@x.com\n", ImportFormat::Yaml, "u.yml")
            .expect("wrapped");
        assert_eq!(a.len(), 1);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn yaml_errors_name_the_record_and_the_key() {
        for (yaml, expected) in [
            (
                "- email: a@x.com\n- email: b@x.com\n  colour: red\n",
                "colour",
            ),
            ("users:\n  - email: a@x.com\n    colour: red\n", "colour"),
            ("people:\n  - email: a@x.com\n", "people"),
            ("- email: a@x.com\n  active: maybe\n", "maybe"),
            ("- email: a@x.com\n  name: [1, 2]\n", "name"),
        ] {
            let err = parse_import(yaml, ImportFormat::Yaml, "u.yml").expect_err(yaml);
            let text = err.to_string();
            assert!(text.contains(expected), "{yaml}: {text}");
            assert!(!text.contains("untagged"), "{yaml}: {text}");
        }
        let err = parse_import(
            "- email: a@x.com\n- email: b@x.com\n  colour: red\n",
            ImportFormat::Yaml,
            "u.yml",
        )
        .expect_err("second record");
        assert!(err.to_string().contains("record 2"), "{err}");
    }

    #[test]
    fn unknown_column_is_an_error() {
        let err = parse_import("email,colour\na@x.com,red\n", ImportFormat::Csv, "u.csv")
            .expect_err("unknown column");
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
