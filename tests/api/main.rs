//! Integration tests: the real router on a random loopback port, on SQLite and PostgreSQL.

mod helpers;

mod calls;
mod cli;
mod heartbeat;
mod info;
mod limits;
mod push;
mod queue;
mod routing;
mod users;
mod webhook;
