//! `db.*`: the database connection and its pool.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::app::Secret;
use super::duration;

/// Which database engine holds the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// Embedded SQLite file (single node).
    Sqlite,
    /// PostgreSQL (any number of replicas).
    #[serde(alias = "postgresql", alias = "pgx")]
    Postgres,
}

/// `db.*`: database connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbSettings {
    /// `sqlite` (default) or `postgres`.
    pub driver: Driver,
    /// Full connection URL; wins over the individual options when set.
    pub url: Secret,
    /// SQLite database file.
    pub path: String,
    /// PostgreSQL host.
    pub addr: String,
    /// PostgreSQL port.
    pub port: u16,
    /// PostgreSQL user.
    pub user: String,
    /// PostgreSQL password.
    pub password: Secret,
    /// PostgreSQL database name.
    pub dbname: String,
    /// PostgreSQL `sslmode` (disable, prefer, require, verify-ca, verify-full).
    pub sslmode: String,
    /// Longest wait for a connection from the pool (or a new one).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Statement timeout for reads.
    #[serde(with = "duration")]
    pub read_timeout: Duration,
    /// Statement timeout for writes.
    #[serde(with = "duration")]
    pub write_timeout: Duration,
    /// Connection pool sizing.
    pub pool: PoolSettings,
}

impl Default for DbSettings {
    fn default() -> Self {
        DbSettings {
            driver: Driver::Sqlite,
            url: Secret::default(),
            path: "oncall-relay.db".into(),
            addr: "127.0.0.1".into(),
            port: 5432,
            user: "admin".into(),
            password: Secret("admin".into()),
            dbname: "emu_oncall".into(),
            sslmode: "prefer".into(),
            timeout: Duration::from_secs(3),
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            pool: PoolSettings::default(),
        }
    }
}

/// `db.pool.*`: connection pool sizing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSettings {
    /// Most connections open at once.
    pub max_open_connections: u32,
    /// Connections kept open while idle.
    pub max_idle_connections: u32,
    /// A connection is replaced after this long.
    #[serde(with = "duration")]
    pub max_life_time: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_open_connections: 16,
            max_idle_connections: 2,
            max_life_time: Duration::from_secs(30 * 60),
        }
    }
}
