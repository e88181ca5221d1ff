//! Integration tests: the real router on a random loopback port, on SQLite and PostgreSQL.

mod helpers;

mod ack;
mod admin;
mod answers;
mod backends;
mod calls;
mod cli;
mod console;
mod crash;
mod faults;
mod fuzz;
mod hardening;
mod heartbeat;
mod info;
mod limits;
mod messages;
mod metrics;
mod packaging;
mod push;
mod queue;
mod refusals;
mod replicas;
mod resilience;
mod routing;
mod schedules;
mod users;
