//! PostgreSQL for the tests: the server of `RELAY_TEST_PG`, whether it is there, and a
//! database per test that is dropped when the test is done.

use std::time::Duration;

pub(super) fn pg_admin_url() -> String {
    std::env::var("RELAY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Host and port of a `postgres://` URL (5432 when it names none).
fn pg_host_port(url: &str) -> Option<(String, u16)> {
    let url = reqwest::Url::parse(url).ok()?;
    let host = url.host_str()?.trim_matches(|c| c == '[' || c == ']');
    Some((host.to_string(), url.port().unwrap_or(5432)))
}

/// `host:port` of the PostgreSQL server of `RELAY_TEST_PG`.
pub fn pg_address() -> String {
    let (host, port) = pg_host_port(&pg_admin_url()).expect("RELAY_TEST_PG names a host");
    format!("{host}:{port}")
}

/// Whether PostgreSQL tests must be skipped: only outside CI, when no server answers at the
/// address of `RELAY_TEST_PG`. `scripts/test` leaves them out of the run then, so they count
/// as skipped; a direct run returns early from them with a note on stderr.
pub fn skip_postgres() -> bool {
    if std::env::var("RELAY_TEST_REQUIRE_PG").is_ok() || std::env::var("CI").is_ok() {
        return false;
    }
    let url = pg_admin_url();
    let Some((host, port)) = pg_host_port(&url) else {
        eprintln!(
            "RELAY_TEST_PG is not a postgres:// URL with a host: skipping this PostgreSQL test"
        );
        return true;
    };
    use std::net::ToSocketAddrs;
    let reachable = (host.as_str(), port)
        .to_socket_addrs()
        .map(|mut addrs| {
            addrs.any(|a| {
                std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok()
            })
        })
        .unwrap_or(false);
    if !reachable {
        eprintln!("PostgreSQL is not running on {host}:{port}: skipping this PostgreSQL test");
    }
    !reachable
}

/// A PostgreSQL database made for one test and dropped when it is dropped.
pub struct PgDatabase {
    pub name: String,
    /// Its URL: `RELAY_TEST_PG` with the database name replaced.
    pub url: String,
}

impl PgDatabase {
    /// Creates `{prefix}_t{unix seconds}_{random}` on the server of `RELAY_TEST_PG`: the time
    /// lets `scripts/test` sweep only leftovers, never a database another run still uses.
    pub async fn create(prefix: &str) -> PgDatabase {
        use sqlx::{Connection, Executor};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let name = format!("{prefix}_t{now}_{:016x}", rand::random::<u64>());
        let admin = pg_admin_url();
        let mut conn = sqlx::postgres::PgConnection::connect(&admin)
            .await
            .expect("PostgreSQL must be running for the PostgreSQL tests (scripts/test starts it)");
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create test database");
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        let url = format!("{base}/{name}");
        PgDatabase { name, url }
    }
}

impl Drop for PgDatabase {
    /// Drops the database on a thread of its own, so that it works inside and outside a
    /// runtime and during a panic; `WITH (FORCE)` ends connections an app still holds. A
    /// database that cannot be dropped is only a warning: `scripts/test` sweeps leftovers.
    fn drop(&mut self) {
        use sqlx::{Connection, Executor};
        let (admin, name) = (pg_admin_url(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let drop = async {
                    let mut conn = sqlx::postgres::PgConnection::connect(&admin).await?;
                    conn.execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await?;
                    conn.close().await
                };
                match tokio::time::timeout(Duration::from_secs(10), drop).await {
                    Ok(result) => result.map_err(|e| e.to_string()),
                    Err(_) => Err("timed out".to_string()),
                }
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: test database {} not dropped: {e}", self.name),
            Err(_) => eprintln!("warning: test database {} not dropped: panicked", self.name),
        }
    }
}

/// A fresh PostgreSQL database for a test that needs one; None when [`skip_postgres`].
pub async fn postgres_test_db() -> Option<super::TestDb> {
    if skip_postgres() {
        return None;
    }
    Some(super::TestDb::new(super::Db::Postgres).await)
}
