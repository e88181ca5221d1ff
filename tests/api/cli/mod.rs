//! The `oncall-relay` binary: user management, events, configuration errors.

use std::process::Output;

mod check_config;
mod events;
mod help;
mod migrate;
mod serve;
mod users;

/// The binary run in `dir` (no database flags), waited for.
fn relay_in<I, S>(dir: &std::path::Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    std::process::Command::new(env!("CARGO_BIN_EXE_oncall-relay"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run")
}

fn write_config(dir: &tempfile::TempDir, yaml: &str) -> String {
    let path = dir.path().join("relay.yml");
    std::fs::write(&path, yaml).expect("write config");
    path.display().to_string()
}
