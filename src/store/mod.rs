//! Database access shared by every module: the pool, migrations and the few SQL differences
//! between SQLite and PostgreSQL.
//!
//! Queries go through sqlx's `Any` driver so that one SQL text serves both engines. `Any`
//! carries only integers, floats, text and blobs: timestamps are Unix milliseconds in BIGINT
//! columns, flags are BIGINT 0/1.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow, install_default_drivers};
use sqlx::{AnyPool, Executor, FromRow, SqlSafeStr};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::config::{DbSettings, Driver};

mod columns;
pub mod lease;

pub use columns::{Flag, JsonText};

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or opened.
    #[error("cannot connect to the {driver} database: {source}")]
    Connect {
        /// `sqlite` or `postgres`.
        driver: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A schema migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

/// A connection pool and the engine behind it.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    driver: Driver,
    /// SQLite only: this process's writers queue here. SQLite's own busy handler sleeps in
    /// steps of up to 100 ms, so contended writers would stall; a mutex wakes the next one
    /// the moment the lock is free.
    write_lock: Option<Arc<Mutex<()>>>,
}

/// A write transaction; on SQLite it also holds this process's write lock until it ends.
#[derive(Debug)]
pub struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _guard: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    /// Commits, then releases the write lock.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}

impl Store {
    /// Opens the pool described by `db` (the SQLite file is created when missing).
    pub async fn connect(db: &DbSettings) -> Result<Store, StoreError> {
        install_default_drivers();
        let driver = driver_of(db);
        let url = connection_url(db, driver);
        let options = AnyPoolOptions::new()
            .acquire_timeout(db.timeout)
            .max_lifetime(Some(db.pool.max_life_time).filter(|d| !d.is_zero()));
        let options = match driver {
            Driver::Sqlite => {
                create_private_sqlite_file(&url).map_err(|e| StoreError::Connect {
                    driver: "sqlite",
                    source: sqlx::Error::Io(e),
                })?;
                // One writer at a time anyway; a few readers are plenty. A small page cache
                // per connection: the hot rows are few, and the default 2 MiB each adds up.
                let max = db.pool.max_open_connections.clamp(1, 4);
                let busy = db.write_timeout.max(Duration::from_secs(1)).as_millis();
                options
                    .max_connections(max)
                    .min_connections(db.pool.max_idle_connections.min(max))
                    .after_connect(move |conn, _meta| {
                        let pragmas = format!(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {busy}; \
                             PRAGMA cache_size = -1024;"
                        );
                        Box::pin(async move {
                            conn.execute(sqlx::AssertSqlSafe(pragmas)).await?;
                            Ok(())
                        })
                    })
            }
            Driver::Postgres => {
                let max = db.pool.max_open_connections.max(1);
                let statement_timeout = db.read_timeout.max(db.write_timeout).as_millis();
                options
                    .max_connections(max)
                    .min_connections(db.pool.max_idle_connections.min(max))
                    .after_connect(move |conn, _meta| {
                        // Custom plans: the queue table starts empty, and a generic plan cached
                        // then keeps scanning it whole long after it has grown.
                        let set = format!(
                            "SET statement_timeout = {statement_timeout}; SET application_name = 'oncall-relay'; \
                             SET plan_cache_mode = force_custom_plan"
                        );
                        Box::pin(async move {
                            conn.execute(sqlx::AssertSqlSafe(set)).await?;
                            Ok(())
                        })
                    })
            }
        };
        let name = driver_name(driver);
        let pool = tokio::time::timeout(db.timeout + Duration::from_secs(2), options.connect(&url))
            .await
            .map_err(|_| StoreError::Connect {
                driver: name,
                source: sqlx::Error::PoolTimedOut,
            })?
            .map_err(|source| StoreError::Connect {
                driver: name,
                source,
            })?;
        let write_lock = (driver == Driver::Sqlite).then(|| Arc::new(Mutex::new(())));
        Ok(Store {
            pool,
            driver,
            write_lock,
        })
    }

    /// Applies pending schema migrations (PostgreSQL serialises concurrent runs with a lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.driver {
            Driver::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Driver::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// The connection pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which engine this store talks to.
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// Row-locking suffix for a claim subquery: rows another worker holds are skipped.
    pub fn skip_locked(&self) -> &'static str {
        match self.driver {
            // SQLite has one writer at a time, so a claim UPDATE is already exclusive.
            Driver::Sqlite => "",
            Driver::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first fails with SQLITE_BUSY,
    /// without waiting, when it later tries to write while another connection has written.
    pub async fn begin_write(&self) -> Result<WriteTx, sqlx::Error> {
        let guard = self.write_guard().await;
        let tx = match self.driver {
            Driver::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Driver::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx { tx, _guard: guard })
    }

    /// Holds this process's SQLite write lock (nothing on PostgreSQL) for a single writing
    /// statement outside a transaction.
    pub async fn write_guard(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        }
    }

    /// The rows `sql` selects as `T`, with `params` bound as `$1`, `$2`, ... in order.
    pub async fn fetch_all<T: Record>(
        &self,
        sql: impl SqlSafeStr,
        params: &[&str],
    ) -> Result<Vec<T>, sqlx::Error> {
        bind_all(sqlx::query_as(sql), params)
            .fetch_all(&self.pool)
            .await
    }

    /// The first row `sql` selects as `T`, if any; `params` as in [`Store::fetch_all`]. For
    /// lookups by key, which select one row at most.
    pub async fn fetch_optional<T: Record>(
        &self,
        sql: impl SqlSafeStr,
        params: &[&str],
    ) -> Result<Option<T>, sqlx::Error> {
        Ok(self.fetch_all(sql, params).await?.into_iter().next())
    }

    /// Closes every connection.
    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A type a row maps to (`#[derive(sqlx::FromRow)]`).
pub trait Record: for<'r> FromRow<'r, AnyRow> + Send + Unpin {}

impl<T: for<'r> FromRow<'r, AnyRow> + Send + Unpin> Record for T {}

/// Binds each of `params` as text, in order.
fn bind_all<'q, T>(
    mut query: sqlx::query::QueryAs<'q, sqlx::Any, T, AnyArguments>,
    params: &[&str],
) -> sqlx::query::QueryAs<'q, sqlx::Any, T, AnyArguments> {
    for param in params {
        query = query.bind(param.to_string());
    }
    query
}

/// `sqlite` or `postgres`, for messages.
pub fn driver_name(driver: Driver) -> &'static str {
    match driver {
        Driver::Sqlite => "sqlite",
        Driver::Postgres => "postgres",
    }
}

fn driver_of(db: &DbSettings) -> Driver {
    let url = db.url.expose();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Driver::Postgres
    } else if url.starts_with("sqlite:") {
        Driver::Sqlite
    } else {
        db.driver
    }
}

fn connection_url(db: &DbSettings, driver: Driver) -> String {
    if !db.url.expose().is_empty() {
        return db.url.expose().to_string();
    }
    match driver {
        Driver::Sqlite => format!("sqlite://{}?mode=rwc", db.path),
        Driver::Postgres => format!(
            "postgres://{}:{}@{}:{}/{}?sslmode={}",
            percent_encode(&db.user),
            percent_encode(db.password.expose()),
            db.addr,
            db.port,
            percent_encode(&db.dbname),
            percent_encode(&db.sslmode),
        ),
    }
}

/// Creates a missing SQLite database file readable by its owner only: it holds phone
/// numbers, device tokens and heartbeat links. SQLite gives the `-wal` and `-shm` files the
/// database file's permissions. Only when the URL asks for creation (`mode=rwc`); an
/// existing file is left as it is.
fn create_private_sqlite_file(url: &str) -> std::io::Result<()> {
    use std::str::FromStr;
    let creates = url
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p == "mode=rwc"));
    if !creates {
        return Ok(());
    }
    let Ok(options) = sqlx::sqlite::SqliteConnectOptions::from_str(url) else {
        // sqlx reports the bad URL itself when it connects.
        return Ok(());
    };
    let path = options.get_filename();
    let name = path.to_string_lossy();
    if name.is_empty() || name.starts_with("file:sqlx-in-memory") || name == ":memory:" {
        return Ok(());
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats Unix milliseconds as RFC 3339 UTC.
pub fn format_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Splits `n` rows into power-of-two chunks (largest first) so that multi-row statements reuse
/// a handful of prepared statements instead of one per batch size.
pub fn pow2_chunks(mut n: usize, max: usize) -> Vec<usize> {
    let mut chunks = Vec::new();
    let top = if max.is_power_of_two() {
        max
    } else {
        max.next_power_of_two() / 2
    }
    .max(1);
    while n > 0 {
        let mut size = top;
        while size > n {
            size /= 2;
        }
        chunks.push(size);
        n -= size;
    }
    chunks
}

/// `($1, $2, ...), (...)` placeholders for `rows` rows of `cols` columns starting at `$first`.
pub fn values_placeholders(rows: usize, cols: usize, first: usize) -> String {
    let mut sql = String::with_capacity(rows * cols * 5);
    let mut n = first;
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&n.to_string());
            n += 1;
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_summing_to_n() {
        for n in 0..600 {
            let chunks = pow2_chunks(n, 256);
            assert_eq!(chunks.iter().sum::<usize>(), n);
            assert!(chunks.iter().all(|c| c.is_power_of_two() && *c <= 256));
        }
        assert_eq!(pow2_chunks(100, 256), vec![64, 32, 4]);
        assert_eq!(pow2_chunks(5, 3), vec![2, 2, 1]);
    }

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(values_placeholders(2, 2, 1), "($1, $2), ($3, $4)");
        assert_eq!(values_placeholders(1, 3, 4), "($4, $5, $6)");
    }

    #[test]
    fn postgres_url_encodes_credentials() {
        let db = DbSettings {
            driver: Driver::Postgres,
            password: crate::config::Secret("p@ss word/".into()),
            ..DbSettings::default()
        };
        let url = connection_url(&db, Driver::Postgres);
        assert_eq!(
            url,
            "postgres://admin:p%40ss%20word%2F@127.0.0.1:5432/emu_oncall?sslmode=prefer"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_sqlite_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("relay.db");
        let db = DbSettings {
            driver: Driver::Sqlite,
            path: path.display().to_string(),
            ..DbSettings::default()
        };
        let store = Store::connect(&db).await.expect("connect");
        store.migrate().await.expect("migrate");
        let mut checked = 0;
        for suffix in ["", "-wal", "-shm"] {
            let file = dir.path().join(format!("relay.db{suffix}"));
            if let Ok(meta) = std::fs::metadata(&file) {
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.display());
                checked += 1;
            }
        }
        assert!(checked >= 2, "the database and its WAL exist");
        store.close().await;
    }

    #[test]
    fn url_scheme_picks_the_driver() {
        let mut db = DbSettings {
            url: crate::config::Secret("postgres://x@h/db".into()),
            ..DbSettings::default()
        };
        assert_eq!(driver_of(&db), Driver::Postgres);
        db.url = crate::config::Secret(String::new());
        assert_eq!(driver_of(&db), Driver::Sqlite);
    }
}
