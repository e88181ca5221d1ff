//! Integration tests: the real router on a random loopback port, on SQLite and PostgreSQL.

mod helpers;

mod calls;
mod cli;
mod email;
mod exec;
mod heartbeat;
mod info;
mod limits;
mod mattermost;
mod ntfy;
mod packaging;
mod push;
mod queue;
mod replicas;
mod resilience;
mod routing;
mod sip;
mod slack;
mod telegram;
mod twilio;
mod users;
mod webhook;
