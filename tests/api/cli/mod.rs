//! The `oncall-relay` binary: user management, events, configuration errors.

use std::process::Output;

mod check_config;
mod events;
mod help;
mod migrate;
mod serve;
mod templates;
mod users;

/// The binary run in `dir` (no database flags), waited for.
fn relay_in<I, S>(dir: &std::path::Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    command_in(dir).args(args).output().expect("run")
}

/// Like [`relay_in`], with neither way of giving a token in the environment.
fn relay_in_without_token<I, S>(dir: &std::path::Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    command_in(dir)
        .env_remove("AUTH_TOKEN")
        .env_remove("ONCALL_RELAY_APP__AUTH_TOKEN")
        .args(args)
        .output()
        .expect("run")
}

fn command_in(dir: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_oncall-relay"));
    cmd.current_dir(dir);
    cmd
}

/// The entry for `email` in the JSON of `users list --json`, which must be there.
fn user_with_email(list: &serde_json::Value, email: &str) -> serde_json::Value {
    list.as_array()
        .expect("list")
        .iter()
        .find(|u| u["email"] == email)
        .unwrap_or_else(|| panic!("{email} listed: {list}"))
        .clone()
}

fn write_config(dir: &tempfile::TempDir, yaml: &str) -> String {
    let path = dir.path().join("relay.yml");
    std::fs::write(&path, yaml).expect("write config");
    path.display().to_string()
}

/// `users add --email {email} {more}` on `db`, which must succeed: its output.
fn users_add(db: &crate::helpers::TestDb, email: &str, more: &[&str]) -> String {
    let mut args = vec!["users", "add", "--email", email];
    args.extend_from_slice(more);
    crate::helpers::ok(&crate::helpers::relay(db, &args))
}
