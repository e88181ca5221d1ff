//! Integration tests: the real router on a random loopback port, on SQLite and PostgreSQL.

mod helpers;

mod admin;
mod calls;
mod cli;
mod email;
mod exec;
mod fuzz;
mod hardening;
mod heartbeat;
mod info;
mod limits;
mod mattermost;
mod metrics;
mod ntfy;
mod packaging;
mod push;
mod queue;
mod replicas;
mod resilience;
mod routing;
mod schedules;
mod sip;
mod slack;
mod telegram;
mod twilio;
mod users;
mod webhook;
