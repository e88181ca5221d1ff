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

/// `users list --json` on `db`.
fn users_list(db: &crate::helpers::TestDb) -> serde_json::Value {
    crate::helpers::relay_json(db, &["users", "list", "--json"])
}

/// The entry for `email` in `users list --json` on `db`, which must be there.
fn listed_user(db: &crate::helpers::TestDb, email: &str) -> serde_json::Value {
    user_with_email(&users_list(db), email)
}

/// Writes `content` to `name` in `dir` and runs `users import` on it, which must succeed.
fn users_import(
    db: &crate::helpers::TestDb,
    dir: &tempfile::TempDir,
    name: &str,
    content: &str,
) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, content).expect("write");
    crate::helpers::ok(&crate::helpers::relay(
        db,
        &["users", "import", path.to_str().expect("path")],
    ))
}

/// `users update {email} {more}` on `db`: the output, whether it succeeded or not.
fn users_update(db: &crate::helpers::TestDb, email: &str, more: &[&str]) -> Output {
    let mut args = vec!["users", "update", email];
    args.extend_from_slice(more);
    crate::helpers::relay(db, &args)
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

/// A fresh folder holding `yaml` as its configuration file, and that file's path.
fn config_dir(yaml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(&dir, yaml);
    (dir, config)
}
