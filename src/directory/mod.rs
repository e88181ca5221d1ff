//! The user directory: who OnCall may call, and at which number.
//!
//! People are read from the database as they are needed; a small cache holds the ones looked
//! up lately (every call looks one up) and is emptied when the `directory_version` row moves,
//! which every write bumps in the same transaction. A miss always reads the database, so a
//! user added a moment ago by another process is found at once.

mod cache;
mod devices;
mod import;
mod lookup;
mod storage;
mod validation;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

pub use crate::roles::{Role, UnknownRole};
pub use devices::Device;
pub use import::{
    ImportFormat, ImportReport, ImportRow, MigrationReport, Skipped, parse_import, read_emu_oncall,
};
pub use lookup::{Listed, Page, People};
pub use validation::{
    email_key, generate_public_id, parse_contact_key, parse_email, parse_language, parse_phone,
    parse_public_id,
};

/// Longest public id OnCall can store.
pub const MAX_PUBLIC_ID_LEN: usize = 20;

/// Errors of directory operations.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A field failed validation.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// No user matches the email or id given.
    #[error("no user with email or id `{0}`")]
    NotFound(String),
    /// Another user already has this email or id.
    #[error("a user with this {field} already exists: {value}")]
    Duplicate {
        /// `email` or `id`.
        field: &'static str,
        /// The clashing value.
        value: String,
    },
    /// An import file could not be read.
    #[error("cannot read {path}: {message}")]
    Import {
        /// The file.
        path: String,
        /// What went wrong (with the line or record where known).
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for DirectoryError {
    fn from(e: sqlx::Error) -> Self {
        DirectoryError::Store(StoreError::Query(e))
    }
}

/// A user's role, named as Grafana Cloud names it.
impl From<UnknownRole> for DirectoryError {
    fn from(e: UnknownRole) -> Self {
        DirectoryError::Invalid {
            field: "role",
            message: e.to_string(),
        }
    }
}

/// The contact that holds a person's own OnCall API token, so that what they do from a page
/// is done as them. A secret: never shown, logged or given to templates.
pub const ONCALL_TOKEN_CONTACT: &str = "oncall_token";

/// Serialises contacts with secret values masked, wherever they are shown or templated.
pub fn serialize_contacts<S: serde::Serializer>(
    contacts: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(contacts.iter().map(|(k, v)| {
        let shown = if k == ONCALL_TOKEN_CONTACT && !v.is_empty() {
            "***"
        } else {
            v.as_str()
        };
        (k, shown)
    }))
}

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct User {
    /// Internal sequence number (sent to OnCall as `grafana_id`).
    #[sqlx(rename = "id")]
    pub seq: i64,
    /// Stable public id sent to OnCall.
    #[sqlx(rename = "public_id")]
    pub id: String,
    /// Display name.
    pub name: String,
    /// Grafana username.
    pub username: String,
    /// Email as stored (OnCall matches it case-sensitively during bulk sync).
    pub email: String,
    /// Phone number in E.164 form.
    pub phone_number: Option<String>,
    /// Inactive users are never called.
    #[sqlx(try_from = "crate::store::Flag")]
    pub active: bool,
    /// Grafana role.
    pub role: Role,
    /// IANA time zone.
    pub timezone: String,
    /// Language of the texts sent to this person (`de`, `pt-BR`); none: the backend's default.
    pub language: Option<String>,
    /// Addresses for backends (`telegram`, `slack`, `email`, `ntfy`, ...) and `route`, a
    /// backend tried first for this user.
    #[sqlx(try_from = "crate::store::JsonText<BTreeMap<String, String>>")]
    #[serde(serialize_with = "serialize_contacts")]
    pub contacts: BTreeMap<String, String>,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

impl User {
    /// What OnCall shows as "phone number verified": active with a phone on file.
    pub fn phone_verified(&self) -> bool {
        self.active && self.phone_number.is_some()
    }
}

/// Fields of a new user.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    /// Public id; generated when absent.
    pub id: Option<String>,
    /// Email (required).
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// Username (defaults to the email's local part).
    pub username: Option<String>,
    /// Phone number in international form.
    pub phone_number: Option<String>,
    /// Role name (editor by default).
    pub role: Option<String>,
    /// Active flag (true by default).
    pub active: Option<bool>,
    /// IANA time zone.
    pub timezone: Option<String>,
    /// Language tag (`de`, `pt-BR`).
    pub language: Option<String>,
    /// Backend addresses.
    #[serde(default)]
    pub contacts: BTreeMap<String, String>,
}

/// Changes to an existing user; `None` leaves a field as it is. Built in code only: each
/// caller reads its own input (the admin API's body, a console form, CLI flags, an import
/// row) into one.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// New email.
    pub email: Option<String>,
    /// New display name.
    pub name: Option<String>,
    /// New username.
    pub username: Option<String>,
    /// New phone number; `Some(None)` removes it.
    pub phone_number: Option<Option<String>>,
    /// New role name.
    pub role: Option<String>,
    /// New active flag.
    pub active: Option<bool>,
    /// New time zone.
    pub timezone: Option<String>,
    /// New language tag; an empty one removes it.
    pub language: Option<String>,
    /// Contacts to set (an empty value removes the key).
    pub contacts: BTreeMap<String, String>,
}

/// The directory: the database, with a small cache for single look-ups.
#[derive(Debug, Clone)]
pub struct Directory {
    store: Store,
    cache: Arc<cache::Cache>,
    reload: Arc<tokio::sync::Mutex<()>>,
    /// Unassigned push tokens recently recorded, so that a stream of pushes to one device
    /// does not write to the database each time.
    seen_devices: Arc<std::sync::Mutex<HashMap<String, std::time::Instant>>>,
}
