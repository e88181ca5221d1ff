//! The user directory: who OnCall may call, and at which number.
//!
//! Servers answer from an in-memory snapshot (user sync and every call look users up) and
//! reload it when the `directory_version` row moves, which every write bumps in the same
//! transaction. A miss is re-checked against that version first, so a user added a moment ago
//! by another process is found at once.

mod devices;
mod import;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::store::{Store, StoreError, now_ms};

pub use devices::Device;
pub use import::{
    ImportFormat, ImportReport, ImportRow, MigrationReport, Skipped, parse_import, read_emu_oncall,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Grafana admin (role 0).
    Admin,
    /// Grafana editor (role 1); the original called it `user`.
    Editor,
    /// Grafana viewer (role 2); the original called it `observer`.
    Viewer,
    /// No Grafana role (role 3).
    None,
}

impl Role {
    /// Parses a role name, accepting the original's names.
    pub fn parse(raw: &str) -> Result<Role, DirectoryError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "admin" | "0" => Ok(Role::Admin),
            "editor" | "user" | "1" => Ok(Role::Editor),
            "viewer" | "observer" | "2" => Ok(Role::Viewer),
            "none" | "3" => Ok(Role::None),
            other => Err(DirectoryError::Invalid {
                field: "role",
                message: format!(
                    "`{other}` is not one of admin, editor (user), viewer (observer), none"
                ),
            }),
        }
    }

    /// The cloud API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::None => "none",
        }
    }

    /// The numeric code used by the `roles` query parameter.
    pub fn code(self) -> u8 {
        match self {
            Role::Admin => 0,
            Role::Editor => 1,
            Role::Viewer => 2,
            Role::None => 3,
        }
    }

    /// The role for a `roles` query value.
    pub fn from_code(code: &str) -> Option<Role> {
        match code.trim() {
            "0" => Some(Role::Admin),
            "1" => Some(Role::Editor),
            "2" => Some(Role::Viewer),
            "3" => Some(Role::None),
            _ => None,
        }
    }
}

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Internal sequence number (sent to OnCall as `grafana_id`).
    pub seq: i64,
    /// Stable public id sent to OnCall.
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
    pub active: bool,
    /// Grafana role.
    pub role: Role,
    /// IANA time zone.
    pub timezone: String,
    /// Addresses for backends (`telegram`, `slack`, `email`, `ntfy`, ...) and `route`, a
    /// backend tried first for this user.
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
#[derive(Debug, Clone, Default, Deserialize)]
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
    /// Backend addresses.
    #[serde(default)]
    pub contacts: BTreeMap<String, String>,
}

/// Changes to an existing user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, Deserialize)]
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
    /// Contacts to set (an empty value removes the key).
    #[serde(default)]
    pub contacts: BTreeMap<String, String>,
}

/// Validates an email address and returns it trimmed.
pub fn parse_email(raw: &str) -> Result<String, DirectoryError> {
    let email = raw.trim();
    let invalid = |message: &str| DirectoryError::Invalid {
        field: "email",
        message: message.to_string(),
    };
    if email.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if email.len() > 254 {
        return Err(invalid("longer than 254 characters"));
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(invalid("must contain `@`"));
    };
    if local.is_empty()
        || domain.is_empty()
        || domain.starts_with('.')
        || domain.ends_with('.')
        || domain.contains("..")
    {
        return Err(invalid("must look like name@example.com"));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("must not contain spaces"));
    }
    Ok(email.to_string())
}

/// Validates a phone number and normalises it to E.164 (`+4930123456`).
pub fn parse_phone(raw: &str) -> Result<String, DirectoryError> {
    let trimmed = raw.trim();
    let invalid = |message: String| DirectoryError::Invalid {
        field: "phone_number",
        message,
    };
    // `00` is the international prefix in most of the world.
    let international = match trimmed.strip_prefix("00") {
        Some(rest) => format!("+{rest}"),
        None => trimmed.to_string(),
    };
    if !international.starts_with('+') {
        return Err(invalid(format!(
            "`{trimmed}` needs a country code, e.g. +49 30 123456"
        )));
    }
    let number = phonenumber::parse(None, &international)
        .map_err(|e| invalid(format!("`{trimmed}` is not a phone number ({e})")))?;
    if !phonenumber::is_valid(&number) {
        return Err(invalid(format!("`{trimmed}` is not a valid phone number")));
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}

/// Validates a public id: 1 to 20 letters, digits, `-` or `_`.
pub fn parse_public_id(raw: &str) -> Result<String, DirectoryError> {
    let id = raw.trim();
    if id.is_empty()
        || id.len() > MAX_PUBLIC_ID_LEN
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(DirectoryError::Invalid {
            field: "id",
            message: format!("`{id}` must be 1 to {MAX_PUBLIC_ID_LEN} letters, digits, `-` or `_`"),
        });
    }
    Ok(id.to_string())
}

/// A fresh public id: `U` and 12 characters of an unambiguous alphabet.
pub fn generate_public_id() -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    let mut id = String::with_capacity(13);
    id.push('U');
    for _ in 0..12 {
        id.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    id
}

/// Lower-cased email used for case-insensitive matching.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// An immutable view of the whole directory.
#[derive(Debug, Default)]
pub struct Snapshot {
    version: i64,
    users: Vec<Arc<User>>,
    by_email: HashMap<String, usize>,
    by_id: HashMap<String, usize>,
    /// Assigned devices: push token → owner's public id.
    devices: HashMap<String, String>,
}

impl Snapshot {
    fn new(version: i64, users: Vec<User>, devices: HashMap<String, String>) -> Snapshot {
        let users: Vec<Arc<User>> = users.into_iter().map(Arc::new).collect();
        let by_email = users
            .iter()
            .enumerate()
            .map(|(i, u)| (email_key(&u.email), i))
            .collect();
        let by_id = users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.id.clone(), i))
            .collect();
        Snapshot {
            version,
            users,
            by_email,
            by_id,
            devices,
        }
    }

    /// The user with this public id.
    pub fn by_id(&self, id: &str) -> Option<&Arc<User>> {
        self.by_id.get(id).map(|&i| &self.users[i])
    }

    /// The user a push token is assigned to.
    pub fn device_owner(&self, token: &str) -> Option<&Arc<User>> {
        self.devices.get(token).and_then(|id| self.by_id(id))
    }

    /// Active admins, the default audience of heartbeat alerts.
    pub fn admins(&self) -> impl Iterator<Item = &Arc<User>> {
        self.users
            .iter()
            .filter(|u| u.active && u.role == Role::Admin)
    }

    /// Every user, in creation order.
    pub fn users(&self) -> &[Arc<User>] {
        &self.users
    }

    /// The user with this email (case-insensitive).
    pub fn by_email(&self, email: &str) -> Option<&Arc<User>> {
        self.by_email
            .get(&email_key(email))
            .map(|&i| &self.users[i])
    }
}

/// The directory: a snapshot for fast reads and the database for writes.
#[derive(Debug, Clone)]
pub struct Directory {
    store: Store,
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
    reload: Arc<tokio::sync::Mutex<()>>,
    /// Unassigned push tokens recently recorded, so that a stream of pushes to one device
    /// does not write to the database each time.
    seen_devices: Arc<std::sync::Mutex<HashMap<String, std::time::Instant>>>,
}

const USER_COLUMNS: &str = "id, public_id, name, username, email, phone_number, active, role, timezone, contacts, created_at, updated_at";

fn user_from_row(row: &sqlx::any::AnyRow) -> Result<User, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(User {
        seq: row.try_get("id")?,
        id: row.try_get("public_id")?,
        name: row.try_get("name")?,
        username: row.try_get("username")?,
        email: row.try_get("email")?,
        phone_number: row.try_get("phone_number")?,
        active: row.try_get::<i64, _>("active")? != 0,
        role: Role::parse(&role).unwrap_or(Role::None),
        timezone: row.try_get("timezone")?,
        // Written only by this module; an unreadable value means no contacts, not no user.
        contacts: serde_json::from_str(&row.try_get::<String, _>("contacts")?).unwrap_or_default(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Directory {
    /// Loads the directory from the store.
    pub async fn load(store: Store) -> Result<Directory, DirectoryError> {
        let dir = Directory {
            store,
            snapshot: Arc::new(RwLock::new(Arc::new(Snapshot {
                version: -1,
                ..Snapshot::default()
            }))),
            reload: Arc::new(tokio::sync::Mutex::new(())),
            seen_devices: Arc::default(),
        };
        dir.refresh().await?;
        Ok(dir)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn install(&self, snap: Snapshot) {
        let snap = Arc::new(snap);
        match self.snapshot.write() {
            Ok(mut guard) => *guard = snap,
            Err(poisoned) => *poisoned.into_inner() = snap,
        }
    }

    async fn version(&self) -> Result<i64, DirectoryError> {
        let v: i64 = sqlx::query_scalar("SELECT version FROM directory_version WHERE id = 1")
            .fetch_one(self.store.pool())
            .await?;
        Ok(v)
    }

    /// Reloads the snapshot when another process changed the directory; returns whether it did.
    pub async fn refresh(&self) -> Result<bool, DirectoryError> {
        let _guard = self.reload.lock().await;
        let current = self.snapshot().version;
        let version = self.version().await?;
        if version == current {
            return Ok(false);
        }
        // Version and rows in one transaction so the snapshot is never newer than its label.
        let mut tx = self.store.pool().begin().await?;
        let version: i64 = sqlx::query_scalar("SELECT version FROM directory_version WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        // Row by row: holding every raw row at once would double the peak memory of a reload.
        let mut users = Vec::new();
        {
            let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM directory_users ORDER BY id"
            )))
            .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                users.push(user_from_row(&row)?);
            }
        }
        let devices = devices::assigned(&mut tx).await?;
        tx.commit().await?;
        self.install(Snapshot::new(version, users, devices));
        crate::telemetry::release_free_memory();
        Ok(true)
    }

    /// Finds a user by email for a call or SMS.
    ///
    /// Trusts the snapshot for a reachable user; a miss or an unreachable user is re-checked
    /// against the database version, so a phone added a second ago by the CLI counts.
    pub async fn find_for_delivery(
        &self,
        email: &str,
    ) -> Result<Option<Arc<User>>, DirectoryError> {
        if let Some(user) = self.snapshot().by_email(email)
            && user.phone_verified()
        {
            return Ok(Some(user.clone()));
        }
        self.refresh().await?;
        Ok(self.snapshot().by_email(email).cloned())
    }

    /// Finds a user by email or public id, reading the database.
    pub async fn get(&self, email_or_id: &str) -> Result<User, DirectoryError> {
        let key = email_or_id.trim();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM directory_users WHERE email_key = $1 OR public_id = $2"
        )))
        .bind(email_key(key))
        .bind(key.to_string())
        .fetch_optional(self.store.pool())
        .await?;
        match row {
            Some(row) => Ok(user_from_row(&row)?),
            None => Err(DirectoryError::NotFound(key.to_string())),
        }
    }

    /// Every user, read from the database.
    pub async fn list(&self) -> Result<Vec<User>, DirectoryError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM directory_users ORDER BY id"
        )))
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows.iter().map(user_from_row).collect::<Result<_, _>>()?)
    }

    /// Adds a user after validating every field.
    pub async fn add(&self, new: NewUser) -> Result<User, DirectoryError> {
        let user = validate_new(new)?;
        let mut tx = self.store.begin_write().await?;
        let user = insert_user(&mut tx, user).await?;
        bump_version(&mut tx).await?;
        tx.commit().await?;
        self.refresh().await?;
        Ok(user)
    }

    /// Changes a user found by email or public id.
    pub async fn update(
        &self,
        email_or_id: &str,
        patch: UserPatch,
    ) -> Result<User, DirectoryError> {
        let current = self.get(email_or_id).await?;
        let updated = apply_patch(current, patch)?;
        let mut tx = self.store.begin_write().await?;
        let user = update_user(&mut tx, updated).await?;
        bump_version(&mut tx).await?;
        tx.commit().await?;
        self.refresh().await?;
        Ok(user)
    }

    /// Removes a user found by email or public id.
    pub async fn remove(&self, email_or_id: &str) -> Result<User, DirectoryError> {
        let user = self.get(email_or_id).await?;
        let mut tx = self.store.begin_write().await?;
        sqlx::query("DELETE FROM directory_users WHERE id = $1")
            .bind(user.seq)
            .execute(&mut *tx)
            .await?;
        bump_version(&mut tx).await?;
        tx.commit().await?;
        self.refresh().await?;
        Ok(user)
    }

    /// Adds or updates users by email in one transaction; all or nothing.
    pub async fn import(&self, rows: Vec<ImportRow>) -> Result<ImportReport, DirectoryError> {
        let mut report = ImportReport::default();
        let mut tx = self.store.begin_write().await?;
        for (index, row) in rows.into_iter().enumerate() {
            let at = |e: DirectoryError| match e {
                DirectoryError::Invalid { field, message } => DirectoryError::Invalid {
                    field,
                    message: format!("record {}: {message}", index + 1),
                },
                other => other,
            };
            match upsert(&mut tx, row).await.map_err(at)? {
                Upserted::Added(_) => report.added += 1,
                Upserted::Updated(_) => report.updated += 1,
                Upserted::Unchanged(_) => report.unchanged += 1,
            }
        }
        bump_version(&mut tx).await?;
        tx.commit().await?;
        self.refresh().await?;
        Ok(report)
    }

    /// Adds or updates users by email in one transaction, leaving out (and reporting) each
    /// record that cannot be imported instead of failing them all: for moving over from
    /// another system, where a few bad rows must not hold up the rest. Idempotent.
    pub async fn import_each(
        &self,
        records: Vec<(String, ImportRow)>,
    ) -> Result<MigrationReport, DirectoryError> {
        let mut report = MigrationReport::default();
        let mut seen_emails: HashMap<String, String> = HashMap::new();
        let mut seen_ids: HashMap<String, String> = HashMap::new();
        let mut tx = self.store.begin_write().await?;
        for (label, row) in records {
            let mut skip = |reason: String| {
                report.skipped.push(Skipped {
                    record: label.clone(),
                    reason,
                })
            };
            if row.email.trim().is_empty() {
                skip("missing email".into());
                continue;
            }
            let key = email_key(&row.email);
            if let Some(first) = seen_emails.get(&key) {
                skip(format!(
                    "duplicate email {} (imported from {first})",
                    row.email.trim()
                ));
                continue;
            }
            let wanted_id = row
                .id
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            if let Some(id) = &wanted_id
                && let Some(first) = seen_ids.get(id)
            {
                skip(format!("duplicate id {id} (imported from {first})"));
                continue;
            }
            let user = match upsert(&mut tx, row).await {
                Ok(Upserted::Added(user)) => {
                    report.added.push(user.email.clone());
                    user
                }
                Ok(Upserted::Updated(user)) => {
                    report.updated.push(user.email.clone());
                    user
                }
                Ok(Upserted::Unchanged(user)) => {
                    report.unchanged += 1;
                    user
                }
                // Both are found before anything is written, so the transaction goes on.
                Err(e @ (DirectoryError::Invalid { .. } | DirectoryError::Duplicate { .. })) => {
                    skip(e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(id) = &wanted_id
                && *id != user.id
            {
                report.notes.push(format!(
                    "{label}: {} is already in the directory with id {}; the id {id} is not applied",
                    user.email, user.id
                ));
            }
            seen_emails.insert(key, label.clone());
            if let Some(id) = wanted_id {
                seen_ids.insert(id, label);
            }
        }
        bump_version(&mut tx).await?;
        tx.commit().await?;
        self.refresh().await?;
        Ok(report)
    }
}

/// What [`upsert`] did, with the user as stored.
enum Upserted {
    Added(User),
    Updated(User),
    Unchanged(User),
}

/// Adds the record's user, or updates the user with its email. Invalid fields and an id that
/// belongs to someone else are reported before anything is written, so that a caller may
/// skip the record and go on with the transaction (a failed statement would abort it on
/// PostgreSQL).
async fn upsert(tx: &mut sqlx::AnyConnection, row: ImportRow) -> Result<Upserted, DirectoryError> {
    let email = parse_email(&row.email)?;
    let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM directory_users WHERE email_key = $1"
    )))
    .bind(email_key(&email))
    .fetch_optional(&mut *tx)
    .await?;
    match existing {
        Some(existing) => {
            let current = user_from_row(&existing)?;
            let updated = apply_patch(current.clone(), row.into_patch())?;
            if updated == current {
                Ok(Upserted::Unchanged(current))
            } else {
                Ok(Upserted::Updated(update_user(tx, updated).await?))
            }
        }
        None => {
            let user = validate_new(row.into_new())?;
            let owner: Option<String> =
                sqlx::query_scalar("SELECT email FROM directory_users WHERE public_id = $1")
                    .bind(user.id.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
            if owner.is_some() {
                return Err(DirectoryError::Duplicate {
                    field: "id",
                    value: user.id,
                });
            }
            Ok(Upserted::Added(insert_user(tx, user).await?))
        }
    }
}

pub(crate) async fn bump_version(conn: &mut sqlx::AnyConnection) -> Result<(), DirectoryError> {
    sqlx::query("UPDATE directory_version SET version = version + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn validate_new(new: NewUser) -> Result<User, DirectoryError> {
    let email = parse_email(&new.email)?;
    let id = match new.id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(id) => parse_public_id(id)?,
        None => generate_public_id(),
    };
    let phone_number = match new.phone_number.as_deref().map(str::trim) {
        Some(p) if !p.is_empty() => Some(parse_phone(p)?),
        _ => None,
    };
    let role = match new.role.as_deref().map(str::trim) {
        Some(r) if !r.is_empty() => Role::parse(r)?,
        _ => Role::Editor,
    };
    let username = match new.username.map(|u| u.trim().to_string()) {
        Some(u) if !u.is_empty() => u,
        _ => email.split('@').next().unwrap_or_default().to_string(),
    };
    let now = now_ms();
    Ok(User {
        seq: 0,
        id,
        name: new.name.map(|n| n.trim().to_string()).unwrap_or_default(),
        username,
        email,
        phone_number,
        active: new.active.unwrap_or(true),
        role,
        timezone: new
            .timezone
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "UTC".into()),
        contacts: new
            .contacts
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| Ok((parse_contact_key(&k)?, v.trim().to_string())))
            .collect::<Result<_, DirectoryError>>()?,
        created_at: now,
        updated_at: now,
    })
}

fn contacts_json(contacts: &BTreeMap<String, String>) -> String {
    serde_json::to_string(contacts).unwrap_or_else(|_| "{}".into())
}

/// Validates a contact key: lower-case letters, digits, `_` and `-` (`telegram`, `email`, `route`).
pub fn parse_contact_key(raw: &str) -> Result<String, DirectoryError> {
    let key = raw.trim().to_ascii_lowercase();
    if key.is_empty()
        || key.len() > 40
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(DirectoryError::Invalid {
            field: "contacts",
            message: format!("`{raw}` is not a contact name (letters, digits, `_`, `-`)"),
        });
    }
    Ok(key)
}

fn apply_patch(mut user: User, patch: UserPatch) -> Result<User, DirectoryError> {
    let before = user.clone();
    if let Some(email) = patch.email {
        user.email = parse_email(&email)?;
    }
    if let Some(name) = patch.name {
        user.name = name.trim().to_string();
    }
    if let Some(username) = patch.username {
        user.username = username.trim().to_string();
    }
    if let Some(phone) = patch.phone_number {
        user.phone_number = match phone.as_deref().map(str::trim) {
            Some(p) if !p.is_empty() => Some(parse_phone(p)?),
            _ => None,
        };
    }
    if let Some(role) = patch.role {
        user.role = Role::parse(&role)?;
    }
    if let Some(active) = patch.active {
        user.active = active;
    }
    if let Some(tz) = patch.timezone {
        user.timezone = tz.trim().to_string();
    }
    for (key, value) in patch.contacts {
        let key = parse_contact_key(&key)?;
        let value = value.trim().to_string();
        if value.is_empty() {
            user.contacts.remove(&key);
        } else {
            user.contacts.insert(key, value);
        }
    }
    if user != before {
        user.updated_at = now_ms();
    }
    Ok(user)
}

fn unique_violation(e: sqlx::Error, user: &User) -> DirectoryError {
    if let sqlx::Error::Database(db) = &e
        && db.is_unique_violation()
    {
        let msg = db.message().to_ascii_lowercase();
        return if msg.contains("public_id") {
            DirectoryError::Duplicate {
                field: "id",
                value: user.id.clone(),
            }
        } else {
            DirectoryError::Duplicate {
                field: "email",
                value: user.email.clone(),
            }
        };
    }
    e.into()
}

async fn insert_user(conn: &mut sqlx::AnyConnection, user: User) -> Result<User, DirectoryError> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO directory_users (public_id, name, username, email, email_key, phone_number, active, role, timezone, created_at, updated_at, contacts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(user.id.clone())
    .bind(user.name.clone())
    .bind(user.username.clone())
    .bind(user.email.clone())
    .bind(email_key(&user.email))
    .bind(user.phone_number.clone())
    .bind(i64::from(user.active))
    .bind(user.role.as_str())
    .bind(user.timezone.clone())
    .bind(user.created_at)
    .bind(user.updated_at)
    .bind(contacts_json(&user.contacts))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| unique_violation(e, &user))?;
    Ok(User { seq, ..user })
}

async fn update_user(conn: &mut sqlx::AnyConnection, user: User) -> Result<User, DirectoryError> {
    sqlx::query(
        "UPDATE directory_users SET name = $1, username = $2, email = $3, email_key = $4, phone_number = $5, \
         active = $6, role = $7, timezone = $8, updated_at = $9, contacts = $11 WHERE id = $10",
    )
    .bind(user.name.clone())
    .bind(user.username.clone())
    .bind(user.email.clone())
    .bind(email_key(&user.email))
    .bind(user.phone_number.clone())
    .bind(i64::from(user.active))
    .bind(user.role.as_str())
    .bind(user.timezone.clone())
    .bind(user.updated_at)
    .bind(user.seq)
    .bind(contacts_json(&user.contacts))
    .execute(&mut *conn)
    .await
    .map_err(|e| unique_violation(e, &user))?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_normalised_to_e164() {
        assert_eq!(parse_phone("+49 30 123456").expect("valid"), "+4930123456");
        assert_eq!(parse_phone("0049 30 123456").expect("valid"), "+4930123456");
        assert_eq!(
            parse_phone(" +1 (202) 555-0143 ").expect("valid"),
            "+12025550143"
        );
        assert!(parse_phone("030 123456").is_err(), "no country code");
        assert!(parse_phone("+49 abc").is_err());
        assert!(parse_phone("garbage").is_err());
        assert!(parse_phone("+1 555").is_err(), "too short");
    }

    #[test]
    fn emails_are_checked() {
        assert_eq!(parse_email(" a@b.co ").expect("valid"), "a@b.co");
        assert_eq!(
            parse_email("john+oncall@x.com").expect("valid"),
            "john+oncall@x.com"
        );
        for bad in ["", "no-at", "@x.com", "a@", "a b@x.com", "a@.x", "a@x..com"] {
            assert!(parse_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_ids_fit_oncall() {
        for _ in 0..100 {
            let id = generate_public_id();
            assert!(id.len() <= MAX_PUBLIC_ID_LEN);
            assert!(parse_public_id(&id).is_ok());
        }
        assert!(
            parse_public_id("U12345678901234567890").is_err(),
            "21 chars"
        );
        assert!(parse_public_id("bad id").is_err());
    }

    #[test]
    fn roles_accept_original_names() {
        assert_eq!(Role::parse("user").expect("ok"), Role::Editor);
        assert_eq!(Role::parse("observer").expect("ok"), Role::Viewer);
        assert_eq!(Role::parse("ADMIN").expect("ok"), Role::Admin);
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn verified_means_active_with_phone() {
        let mut u = validate_new(NewUser {
            email: "a@b.co".into(),
            phone_number: Some("+4930123456".into()),
            ..NewUser::default()
        })
        .expect("valid");
        assert!(u.phone_verified());
        u.active = false;
        assert!(!u.phone_verified());
        u.active = true;
        u.phone_number = None;
        assert!(!u.phone_verified());
    }
}
