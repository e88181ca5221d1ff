//! The in-memory copy of the directory that servers answer from, and its refresh.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures_util::TryStreamExt;

use sqlx::FromRow;

use super::storage::USER_COLUMNS;
use super::{Directory, DirectoryError, Role, User, devices, email_key};
use crate::store::Store;

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

    /// A snapshot of these users, for tests elsewhere in the crate.
    #[cfg(test)]
    pub(crate) fn of_users(users: Vec<User>) -> Snapshot {
        Snapshot::new(0, users, HashMap::new())
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

    /// The user with this phone number (E.164). A scan: replies are rare, and a second index
    /// would cost memory on every relay.
    pub fn by_phone(&self, e164: &str) -> Option<&Arc<User>> {
        self.users
            .iter()
            .find(|u| u.phone_number.as_deref() == Some(e164))
    }

    /// The active user whose contact `key` is `value` (a Telegram chat id, ...). A scan, like
    /// [`Snapshot::by_phone`].
    pub fn by_contact(&self, key: &str, value: &str) -> Option<&Arc<User>> {
        self.users
            .iter()
            .find(|u| u.active && u.contacts.get(key).is_some_and(|v| v.trim() == value))
    }

    /// The user with this email (case-insensitive).
    pub fn by_email(&self, email: &str) -> Option<&Arc<User>> {
        self.by_email
            .get(&email_key(email))
            .map(|&i| &self.users[i])
    }
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
                users.push(User::from_row(&row)?);
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

    /// Finds the user with this phone number (E.164), re-checking a miss like
    /// [`Directory::find_for_delivery`].
    pub async fn find_by_phone(&self, e164: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        if let Some(user) = self.snapshot().by_phone(e164) {
            return Ok(Some(user.clone()));
        }
        self.refresh().await?;
        Ok(self.snapshot().by_phone(e164).cloned())
    }
}
