//! Reading people: single look-ups through a small cache, everything else from the database.
//!
//! Nothing holds the whole directory: start-up reads only `directory_version`, and memory does
//! not grow with the number of people.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::TryStreamExt;
use sqlx::FromRow;

use super::storage::USER_COLUMNS;
use super::{Directory, DirectoryError, Role, User, cache::Cache, email_key};
use crate::store::Store;

/// A few people read together, for code that resolves many names at once (schedules).
#[derive(Debug, Default)]
pub struct People {
    users: Vec<Arc<User>>,
}

impl People {
    /// These people, in the order given.
    pub fn new(users: Vec<Arc<User>>) -> People {
        People { users }
    }

    /// The person with this public id.
    pub fn by_id(&self, id: &str) -> Option<&Arc<User>> {
        self.users.iter().find(|u| u.id == id)
    }

    /// The person with this email (case-insensitive).
    pub fn by_email(&self, email: &str) -> Option<&Arc<User>> {
        let key = email_key(email);
        self.users.iter().find(|u| email_key(&u.email) == key)
    }

    /// Everyone held, in creation order.
    pub fn users(&self) -> &[Arc<User>] {
        &self.users
    }
}

/// What OnCall's user sync shows of a person, each field named after the one it becomes.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Listed {
    /// `id`: the public id.
    #[sqlx(rename = "public_id")]
    pub id: String,
    /// `grafana_id`: the sequence number.
    #[sqlx(rename = "id")]
    pub seq: i64,
    /// `email`, as stored (OnCall matches it case-sensitively).
    pub email: String,
    /// `username`.
    pub username: String,
    /// `role`.
    pub role: Role,
    /// `is_phone_number_verified`: active with a phone on file.
    #[sqlx(try_from = "crate::store::Flag")]
    pub verified: bool,
    /// `name` (long form only).
    pub name: String,
    /// `timezone` (long form only).
    pub timezone: String,
}

/// The columns [`Listed`] reads.
const LISTED_COLUMNS: &str = "public_id, id, email, username, role, \
     CAST(CASE WHEN active = 1 AND phone_number IS NOT NULL THEN 1 ELSE 0 END AS BIGINT) AS verified, name, timezone";

impl From<&User> for Listed {
    fn from(u: &User) -> Listed {
        Listed {
            id: u.id.clone(),
            seq: u.seq,
            email: u.email.clone(),
            username: u.username.clone(),
            role: u.role,
            verified: u.phone_verified(),
            name: u.name.clone(),
            timezone: u.timezone.clone(),
        }
    }
}

/// One page of a listing, and how many match in all.
#[derive(Debug, Default)]
pub struct Page {
    /// How many people match.
    pub count: usize,
    /// The requested slice of them, in creation order.
    pub users: Vec<User>,
}

fn select(condition: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(format!(
        "SELECT {USER_COLUMNS} FROM directory_users WHERE {condition} ORDER BY id"
    ))
}

/// `$1, $2, …` for `n` parameters from `$first`.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A LIKE pattern that finds `value` inside the stored JSON of the contacts: the value as
/// JSON writes it, with LIKE's own characters escaped.
fn contact_pattern(value: &str) -> String {
    let json = serde_json::to_string(value).unwrap_or_default();
    let inner = json
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or("");
    contains_pattern(inner)
}

/// `%text%` for `LIKE … ESCAPE '\'`, with the pattern's own characters escaped.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Reads people with `condition` (bound to `params`) on `conn`, in creation order.
async fn read_in(
    conn: &mut sqlx::AnyConnection,
    condition: &str,
    params: &[&str],
) -> Result<Vec<User>, sqlx::Error> {
    let mut query = sqlx::query_as::<_, User>(select(condition));
    for param in params {
        query = query.bind(param.to_string());
    }
    query.fetch_all(&mut *conn).await
}

impl Directory {
    /// Opens the directory: reads only its version, never the people.
    pub async fn load(store: Store) -> Result<Directory, DirectoryError> {
        let dir = Directory {
            store,
            cache: Arc::new(Cache::new()),
            reload: Arc::new(tokio::sync::Mutex::new(())),
            seen_devices: Arc::default(),
        };
        dir.refresh().await?;
        Ok(dir)
    }

    async fn version(&self) -> Result<i64, DirectoryError> {
        let v: i64 = sqlx::query_scalar("SELECT version FROM directory_version WHERE id = 1")
            .fetch_one(self.store.pool())
            .await?;
        Ok(v)
    }

    /// Empties the cache when the directory changed (here or in another process); returns
    /// whether it did.
    pub async fn refresh(&self) -> Result<bool, DirectoryError> {
        let _guard = self.reload.lock().await;
        let version = self.version().await?;
        if version == self.cache.version() {
            return Ok(false);
        }
        self.cache.reset(version);
        Ok(true)
    }

    /// Reads people with `condition` (bound to `params`), in creation order.
    async fn read(&self, condition: &str, params: &[&str]) -> Result<Vec<User>, DirectoryError> {
        Ok(self.store.fetch_all(select(condition), params).await?)
    }

    /// Reads one person by a unique column and holds them in the cache.
    async fn read_cached(
        &self,
        condition: &str,
        value: &str,
    ) -> Result<Option<Arc<User>>, DirectoryError> {
        let generation = self.cache.generation();
        let user = self.read(condition, &[value]).await?.into_iter().next();
        Ok(user.map(|u| {
            let user = Arc::new(u);
            self.cache.insert(generation, &user);
            user
        }))
    }

    /// The person with this email (case-insensitive).
    pub async fn by_email(&self, email: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        let key = email_key(email);
        if let Some(user) = self.cache.by_email_key(&key) {
            return Ok(Some(user));
        }
        self.read_cached("email_key = $1", &key).await
    }

    /// The person with this public id.
    pub async fn by_id(&self, id: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        if let Some(user) = self.cache.by_id(id) {
            return Ok(Some(user));
        }
        self.read_cached("public_id = $1", id).await
    }

    /// The people with these public ids (those that exist), in one read for all the cache
    /// does not hold.
    pub async fn by_ids(&self, ids: &[&str]) -> Result<HashMap<String, Arc<User>>, DirectoryError> {
        let mut found = HashMap::new();
        let mut missing: Vec<&str> = Vec::new();
        // Notifications to nobody (a push to an unassigned device) name no id.
        for &id in ids.iter().filter(|id| !id.is_empty()) {
            match self.cache.by_id(id) {
                Some(user) => {
                    found.insert(id.to_string(), user);
                }
                None if !missing.contains(&id) => missing.push(id),
                None => {}
            }
        }
        // Bounded so that a large batch never exceeds a statement's parameter limit.
        for chunk in missing.chunks(500) {
            let generation = self.cache.generation();
            let condition = format!("public_id IN ({})", placeholders(1, chunk.len()));
            for user in self.read(&condition, chunk).await? {
                let user = Arc::new(user);
                self.cache.insert(generation, &user);
                found.insert(user.id.clone(), user);
            }
        }
        Ok(found)
    }

    /// The person with this sequence number (OnCall's `grafana_id`).
    pub async fn by_seq(&self, seq: i64) -> Result<Option<User>, DirectoryError> {
        let user = sqlx::query_as::<_, User>(select("id = $1"))
            .bind(seq)
            .fetch_optional(self.store.pool())
            .await?;
        Ok(user)
    }

    /// The first person (in creation order) with this phone number (E.164).
    pub async fn by_phone(&self, e164: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        let users = self.read("phone_number = $1", &[e164]).await?;
        Ok(users.into_iter().next().map(Arc::new))
    }

    /// The first active person whose contact `key` is `value` (a Telegram chat id, a Slack
    /// member id). The database narrows by the value's text; the match itself is checked here.
    pub async fn by_contact(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Option<Arc<User>>, DirectoryError> {
        let users = self
            .read(
                "active = 1 AND contacts LIKE $1 ESCAPE '\\'",
                &[&contact_pattern(value)],
            )
            .await?;
        Ok(users
            .into_iter()
            .find(|u| u.contacts.get(key).is_some_and(|v| v.trim() == value))
            .map(Arc::new))
    }

    /// The first person (in creation order) whose email or else username is `name`, ignoring
    /// case (ASCII case for the username).
    pub async fn by_email_or_username(
        &self,
        name: &str,
    ) -> Result<Option<Arc<User>>, DirectoryError> {
        if let Some(user) = self.by_email(name).await? {
            return Ok(Some(user));
        }
        let users = self.by_username(name).await?;
        Ok(users
            .into_iter()
            .find(|u| u.username.eq_ignore_ascii_case(name))
            .map(Arc::new))
    }

    /// Everyone whose username is `name`, ignoring ASCII case (other letters as the database
    /// folds them), in creation order.
    pub async fn by_username(&self, name: &str) -> Result<Vec<User>, DirectoryError> {
        self.read("lower(username) = lower($1)", &[name]).await
    }

    /// Active admins, the default audience of heartbeat alerts, read on `conn` (a write in
    /// progress must not wait for a second connection).
    pub async fn admins_in(
        &self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<Vec<Arc<User>>, DirectoryError> {
        let users = read_in(conn, "active = 1 AND role = $1", &[Role::Admin.as_str()]).await?;
        Ok(users.into_iter().map(Arc::new).collect())
    }

    /// The person with this email, else with this public id, read on `conn`.
    pub async fn by_email_or_id_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        who: &str,
    ) -> Result<Option<Arc<User>>, DirectoryError> {
        let key = email_key(who);
        let users = read_in(conn, "email_key = $1 OR public_id = $2", &[&key, who]).await?;
        let by_email = users.iter().position(|u| email_key(&u.email) == key);
        Ok(by_email
            .or_else(|| users.iter().position(|u| u.id == who))
            .and_then(|i| users.into_iter().nth(i))
            .map(Arc::new))
    }

    /// The person a push token is assigned to. Remembered: assigning a device moves the
    /// directory's version, registering an unassigned one does not need to.
    pub async fn device_owner(&self, token: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        let owner = match self.cache.device(token) {
            Some(owner) => owner,
            None => {
                let generation = self.cache.generation();
                let owner: Option<Option<String>> =
                    sqlx::query_scalar("SELECT user_id FROM devices WHERE token = $1")
                        .bind(token.to_string())
                        .fetch_optional(self.store.pool())
                        .await?;
                let owner = owner.flatten();
                self.cache.insert_device(generation, token, owner.clone());
                owner
            }
        };
        match owner {
            Some(id) => self.by_id(&id).await,
            None => Ok(None),
        }
    }

    /// One page of the people with one of `roles` (any role when empty), in creation order.
    pub async fn page_by_roles(
        &self,
        roles: &[Role],
        offset: usize,
        limit: usize,
    ) -> Result<Page, DirectoryError> {
        // A role this version does not know reads as `none`: only a scan finds those rows.
        if roles.contains(&Role::None) {
            return self.scan(|u| roles.contains(&u.role), offset, limit).await;
        }
        let (count, users) = self.page_of(USER_COLUMNS, roles, offset, limit).await?;
        Ok(Page { count, users })
    }

    /// [`Directory::page_by_roles`] as OnCall's user sync lists people: only what the page
    /// shows is read, which every sync asks for again and again.
    pub async fn listing_by_roles(
        &self,
        roles: &[Role],
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<Listed>), DirectoryError> {
        if roles.contains(&Role::None) {
            let page = self
                .scan(|u| roles.contains(&u.role), offset, limit)
                .await?;
            return Ok((page.count, page.users.iter().map(Listed::from).collect()));
        }
        self.page_of(LISTED_COLUMNS, roles, offset, limit).await
    }

    /// How many people have one of `roles`, and the page of them from `offset`, as `T` read
    /// through `columns`.
    async fn page_of<T: crate::store::Record>(
        &self,
        columns: &str,
        roles: &[Role],
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<T>), DirectoryError> {
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        let condition = if names.is_empty() {
            "1 = 1".to_string()
        } else {
            format!("role IN ({})", placeholders(1, names.len()))
        };
        // Every page of a sync asks the same count: read once per directory version.
        let key = names.join(",");
        let count = match self.cache.count(&key) {
            Some(count) => count,
            None => {
                let generation = self.cache.generation();
                let sql = format!("SELECT COUNT(*) FROM directory_users WHERE {condition}");
                let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
                for name in &names {
                    query = query.bind(*name);
                }
                let count = usize::try_from(query.fetch_one(self.store.pool()).await?).unwrap_or(0);
                self.cache.insert_count(generation, key, count);
                count
            }
        };
        // Limit and offset are bound, so every page of a sync runs one prepared statement.
        let sql = format!(
            "SELECT {columns} FROM directory_users WHERE {condition} ORDER BY id LIMIT ${} OFFSET ${}",
            names.len() + 1,
            names.len() + 2
        );
        let mut query = sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql));
        for name in &names {
            query = query.bind(*name);
        }
        let rows = query
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(self.store.pool())
            .await?;
        Ok((count, rows))
    }

    /// One page of the people whose email, name, username or phone contains `needle` (ASCII,
    /// lower case), or whose id it is, in creation order: found by the database.
    pub async fn search(
        &self,
        needle: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Page, DirectoryError> {
        const MATCHES: &str = "lower(email) LIKE $1 ESCAPE '\\' OR lower(name) LIKE $1 ESCAPE '\\' \
             OR lower(username) LIKE $1 ESCAPE '\\' OR phone_number LIKE $1 ESCAPE '\\' \
             OR lower(public_id) = $2";
        let pattern = contains_pattern(needle);
        let params = [pattern.as_str(), needle];
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM directory_users WHERE {MATCHES}"
        )))
        .bind(pattern.clone())
        .bind(needle.to_string())
        .fetch_one(self.store.pool())
        .await?;
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM directory_users WHERE {MATCHES} ORDER BY id LIMIT {limit} OFFSET {offset}"
        );
        let users = self
            .store
            .fetch_all(sqlx::AssertSqlSafe(sql), &params)
            .await?;
        Ok(Page {
            count: usize::try_from(count).unwrap_or(0),
            users,
        })
    }

    /// One page of the people `keep` accepts, in creation order: every row is read, one at
    /// a time, and only the page is held. For searches too loose for an index.
    pub async fn scan(
        &self,
        mut keep: impl FnMut(&User) -> bool,
        offset: usize,
        limit: usize,
    ) -> Result<Page, DirectoryError> {
        let mut page = Page::default();
        let sql = format!("SELECT {USER_COLUMNS} FROM directory_users ORDER BY id");
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(self.store.pool());
        while let Some(row) = rows.try_next().await? {
            let user = User::from_row(&row)?;
            if !keep(&user) {
                continue;
            }
            if page.count >= offset && page.users.len() < limit {
                page.users.push(user);
            }
            page.count += 1;
        }
        Ok(page)
    }

    /// The people these emails and names may mean: each email's owner, and everyone whose
    /// username or display name equals one of the names, ignoring case.
    pub async fn people(&self, emails: &[&str], names: &[&str]) -> Result<People, DirectoryError> {
        let mut users: Vec<Arc<User>> = Vec::new();
        let mut add = |user: Arc<User>| {
            if !users.iter().any(|u| u.seq == user.seq) {
                users.push(user);
            }
        };
        for email in emails {
            if let Some(user) = self.by_email(email).await? {
                add(user);
            }
        }
        for name in names.iter().filter(|n| !n.is_empty()) {
            // Every case-insensitive match is in this (wider on PostgreSQL) set; the caller
            // compares exactly.
            for user in self
                .read(
                    "lower(username) = lower($1) OR lower(name) = lower($1)",
                    &[name],
                )
                .await?
            {
                add(Arc::new(user));
            }
        }
        users.sort_by_key(|u| u.seq);
        Ok(People::new(users))
    }

    /// Finds a user by email for a call or SMS.
    ///
    /// Trusts the cache for a reachable user; anyone else is read from the database, so a
    /// phone added a second ago by the CLI counts.
    pub async fn find_for_delivery(
        &self,
        email: &str,
    ) -> Result<Option<Arc<User>>, DirectoryError> {
        let key = email_key(email);
        if let Some(user) = self.cache.by_email_key(&key)
            && user.phone_verified()
        {
            return Ok(Some(user));
        }
        self.read_cached("email_key = $1", &key).await
    }

    /// Finds the user with this phone number (E.164).
    pub async fn find_by_phone(&self, e164: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        self.by_phone(e164).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_patterns_escape_like() {
        assert_eq!(contains_pattern("ali"), "%ali%");
        assert_eq!(contains_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }

    #[test]
    fn contact_patterns_escape_like_and_json() {
        assert_eq!(contact_pattern("12345"), "%12345%");
        assert_eq!(contact_pattern("a_b%c"), "%a\\_b\\%c%");
        assert_eq!(contact_pattern("q\"x"), "%q\\\\\"x%");
    }
}
