//! The device registry: which user a mobile push token belongs to.
//!
//! OnCall's push relay names only a device token. An operator assigns tokens to users; a token
//! seen for the first time is registered unassigned so that it shows up in `devices list`.

use serde::Serialize;

use super::{Directory, DirectoryError};
use crate::store::now_ms;

/// A registered device.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema, sqlx::FromRow)]
pub struct Device {
    /// Push registration token.
    pub token: String,
    /// Owner's public id; `None` while unassigned.
    pub user_id: Option<String>,
    /// Free text (e.g. "Alice's phone").
    pub label: String,
    /// First push seen or assignment (Unix ms).
    pub first_seen_at: i64,
    /// Last push seen or change (Unix ms).
    pub last_seen_at: i64,
}

const DEVICE_COLUMNS: &str = "token, user_id, label, first_seen_at, last_seen_at";

/// How long a recorded unassigned token is not recorded again.
const SEEN_REFRESH: std::time::Duration = std::time::Duration::from_secs(300);
/// Most tokens remembered as recently recorded.
const SEEN_CAPACITY: usize = 10_000;

/// Longest accepted token (FCM tokens are about 160 characters).
const MAX_TOKEN_LEN: usize = 4096;

fn check_token(token: &str) -> Result<String, DirectoryError> {
    let token = token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || token.chars().any(char::is_whitespace) {
        return Err(DirectoryError::Invalid {
            field: "token",
            message: "a device token is 1 to 4096 characters without spaces".into(),
        });
    }
    Ok(token.to_string())
}

impl Directory {
    /// Assigns `token` to a user (found by email or id), registering the token if new.
    pub async fn assign_device(
        &self,
        token: &str,
        user: &str,
        label: Option<&str>,
    ) -> Result<Device, DirectoryError> {
        let token = check_token(token)?;
        let owner = self.get(user).await?;
        let now = now_ms();
        let mut tx = self.store.begin_write().await?;
        sqlx::query(
            "INSERT INTO devices (token, user_id, label, first_seen_at, last_seen_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (token) DO UPDATE SET user_id = $2, label = COALESCE($5, devices.label), last_seen_at = $4",
        )
        .bind(token.clone())
        .bind(owner.id.clone())
        .bind(label.unwrap_or("").to_string())
        .bind(now)
        .bind(label.map(str::to_string))
        .execute(&mut *tx)
        .await?;
        self.commit_change(tx).await?;
        self.device(&token).await
    }

    /// Removes a device.
    pub async fn remove_device(&self, token: &str) -> Result<Device, DirectoryError> {
        let device = self.device(token.trim()).await?;
        let mut tx = self.store.begin_write().await?;
        sqlx::query("DELETE FROM devices WHERE token = $1")
            .bind(device.token.clone())
            .execute(&mut *tx)
            .await?;
        self.commit_change(tx).await?;
        Ok(device)
    }

    /// Records that a push for `token` arrived, registering it (unassigned) if new. A token
    /// recorded in the last few minutes is not written again.
    pub async fn see_device(&self, token: &str) -> Result<(), DirectoryError> {
        let token = check_token(token)?;
        {
            let mut seen = match self.seen_devices.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            if seen
                .get(&token)
                .is_some_and(|at| at.elapsed() < SEEN_REFRESH)
            {
                return Ok(());
            }
            if seen.len() >= SEEN_CAPACITY {
                seen.clear();
            }
            seen.insert(token.clone(), std::time::Instant::now());
        }
        let now = now_ms();
        let _guard = self.store.write_guard().await;
        sqlx::query(
            "INSERT INTO devices (token, first_seen_at, last_seen_at) VALUES ($1, $2, $2) \
             ON CONFLICT (token) DO UPDATE SET last_seen_at = $2",
        )
        .bind(token.clone())
        .bind(now)
        .execute(self.store.pool())
        .await
        .inspect_err(|_| {
            // Not recorded after all: try again on the next push.
            if let Ok(mut seen) = self.seen_devices.lock() {
                seen.remove(&token);
            }
        })?;
        Ok(())
    }

    /// One device by token.
    pub async fn device(&self, token: &str) -> Result<Device, DirectoryError> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE token = $1");
        let device = self
            .store
            .fetch_optional(sqlx::AssertSqlSafe(sql), &[token])
            .await?;
        device.ok_or_else(|| DirectoryError::NotFound(token.to_string()))
    }

    /// Every device, unassigned ones included.
    pub async fn devices(&self) -> Result<Vec<Device>, DirectoryError> {
        let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY id");
        Ok(self.store.fetch_all(sqlx::AssertSqlSafe(sql), &[]).await?)
    }
}
