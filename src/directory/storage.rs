//! The directory's SQL: reads, writes and imports, each write bumping `directory_version`.

use std::collections::{BTreeMap, HashMap};

use sqlx::{FromRow, Row};

use crate::store::WriteTx;

use super::validation::{apply_patch, non_blank, validate_new};
use super::{
    Directory, DirectoryError, ImportReport, ImportRow, MigrationReport, NewUser, Role, Skipped,
    User, UserPatch, email_key, parse_email,
};

/// Read leniently: a role this version does not know is no role, not an unreadable user.
impl sqlx::Type<sqlx::Any> for Role {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <String as sqlx::Type<sqlx::Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Any> for Role {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let name = <String as sqlx::Decode<sqlx::Any>>::decode(value)?;
        Ok(Role::parse(&name).unwrap_or(Role::None))
    }
}

pub(super) const USER_COLUMNS: &str = "id, public_id, name, username, email, phone_number, active, role, timezone, language, contacts, created_at, updated_at";

impl Directory {
    /// Finds a user by email or public id, reading the database.
    pub async fn get(&self, email_or_id: &str) -> Result<User, DirectoryError> {
        let key = email_or_id.trim();
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM directory_users WHERE email_key = $1 OR public_id = $2"
        );
        let user = self
            .store
            .fetch_optional(sqlx::AssertSqlSafe(sql), &[&email_key(key), key])
            .await?;
        user.ok_or_else(|| DirectoryError::NotFound(key.to_string()))
    }

    /// Every user, read from the database.
    pub async fn list(&self) -> Result<Vec<User>, DirectoryError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM directory_users ORDER BY id");
        Ok(self.store.fetch_all(sqlx::AssertSqlSafe(sql), &[]).await?)
    }

    /// Adds a user after validating every field.
    pub async fn add(&self, new: NewUser) -> Result<User, DirectoryError> {
        let user = validate_new(new)?;
        let mut tx = self.store.begin_write().await?;
        let user = insert_user(&mut tx, user).await?;
        self.commit_change(tx).await?;
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
        self.commit_change(tx).await?;
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
        self.commit_change(tx).await?;
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
        self.commit_change(tx).await?;
        self.analyze_after_import(report.added).await;
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
            let wanted_id = non_blank(row.id.as_deref()).map(str::to_string);
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
        self.commit_change(tx).await?;
        self.analyze_after_import(report.added.len()).await;
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
            let current = User::from_row(&existing)?;
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

impl Directory {
    /// Ends a write: bumps the directory version in the same transaction, commits, and
    /// empties the cache, so that every process sees the change.
    pub(super) async fn commit_change(&self, mut tx: WriteTx) -> Result<(), DirectoryError> {
        bump_version(&mut tx).await?;
        tx.commit().await?;
        self.refresh().await?;
        Ok(())
    }
}

/// Rows added at once from which PostgreSQL's statistics are brought up to date at once.
const ANALYZE_AFTER: usize = 1000;

impl Directory {
    /// After a large import, PostgreSQL's planner would go on believing the table small (until
    /// autovacuum comes by) and sort the whole directory for each page of the user sync.
    async fn analyze_after_import(&self, added: usize) {
        if added < ANALYZE_AFTER || self.store.driver() != crate::config::Driver::Postgres {
            return;
        }
        if let Err(e) = sqlx::query("ANALYZE directory_users")
            .execute(self.store.pool())
            .await
        {
            // Autovacuum does the same a little later.
            tracing::debug!(error = %e, "cannot analyze the directory after an import");
        }
    }
}

async fn bump_version(conn: &mut sqlx::AnyConnection) -> Result<(), DirectoryError> {
    sqlx::query("UPDATE directory_version SET version = version + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    Ok(())
}
fn contacts_json(contacts: &BTreeMap<String, String>) -> String {
    serde_json::to_string(contacts).unwrap_or_else(|_| "{}".into())
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

/// Binds the columns every write sets, in the order of [`WRITTEN`]: `$1` to `$11`.
fn bind_user<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    user: &User,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query
        .bind(user.name.clone())
        .bind(user.username.clone())
        .bind(user.email.clone())
        .bind(email_key(&user.email))
        .bind(user.phone_number.clone())
        .bind(i64::from(user.active))
        .bind(user.role.as_str())
        .bind(user.timezone.clone())
        .bind(user.language.clone())
        .bind(user.updated_at)
        .bind(contacts_json(&user.contacts))
}

/// The columns [`bind_user`] binds.
const WRITTEN: [&str; 11] = [
    "name",
    "username",
    "email",
    "email_key",
    "phone_number",
    "active",
    "role",
    "timezone",
    "language",
    "updated_at",
    "contacts",
];

async fn insert_user(conn: &mut sqlx::AnyConnection, user: User) -> Result<User, DirectoryError> {
    let placeholders: Vec<String> = (1..=WRITTEN.len() + 2).map(|i| format!("${i}")).collect();
    let row = bind_user(
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO directory_users ({}, public_id, created_at) VALUES ({}) RETURNING id",
            WRITTEN.join(", "),
            placeholders.join(", ")
        ))),
        &user,
    )
    .bind(user.id.clone())
    .bind(user.created_at)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| unique_violation(e, &user))?;
    let seq: i64 = row.try_get(0)?;
    Ok(User { seq, ..user })
}

async fn update_user(conn: &mut sqlx::AnyConnection, user: User) -> Result<User, DirectoryError> {
    let sets: Vec<String> = WRITTEN
        .iter()
        .enumerate()
        .map(|(i, column)| format!("{column} = ${}", i + 1))
        .collect();
    bind_user(
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE directory_users SET {} WHERE id = ${}",
            sets.join(", "),
            WRITTEN.len() + 1
        ))),
        &user,
    )
    .bind(user.seq)
    .execute(&mut *conn)
    .await
    .map_err(|e| unique_violation(e, &user))?;
    Ok(user)
}
