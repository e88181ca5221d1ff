//! Help texts, the README's quick start, and output to a closed pipe.

use super::relay_in;
use crate::db_test;
use crate::helpers::*;

/// Every subcommand of `oncall-relay`; a new one must be added here, and so gets its help checked.
const SUBCOMMANDS: [&str; 10] = [
    "serve",
    "users",
    "events",
    "devices",
    "integrations",
    "schedules",
    "notify",
    "templates",
    "check-config",
    "config",
];

/// The `--help` text of `oncall-relay <path>`, which must succeed.
fn help(path: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oncall-relay"))
        .args(path)
        .arg("--help")
        .output()
        .expect("run");
    ok(&out)
}

/// The names a help text lists under `Commands:`, without clap's own `help`.
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // Entries are indented by two spaces; continuation lines by more.
        .filter_map(|l| l.strip_prefix("  ").filter(|rest| !rest.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn help_documents_every_subcommand() {
    let mut listed = listed_subcommands(&help(&[]));
    listed.sort();
    let mut expected = SUBCOMMANDS.map(String::from).to_vec();
    expected.sort();
    assert_eq!(listed, expected, "the subcommands `--help` lists");
    let mut nested = 0;
    for cmd in SUBCOMMANDS {
        let mut paths = vec![vec![cmd.to_string()]];
        paths.extend(
            listed_subcommands(&help(&[cmd]))
                .into_iter()
                .map(|sub| vec![cmd.to_string(), sub]),
        );
        nested += paths.len() - 1;
        for path in paths {
            let args: Vec<&str> = path.iter().map(String::as_str).collect();
            let text = help(&args);
            let usage = format!("Usage: oncall-relay {}", path.join(" "));
            assert!(text.contains(&usage), "{path:?}: no `{usage}` in {text}");
            // An undocumented subcommand's help starts with its usage.
            assert!(
                !text.starts_with("Usage:"),
                "{path:?} has no description: {text}"
            );
        }
    }
    // users 5, events 3, devices 3, integrations 1, schedules 4, notify 1, templates 1.
    assert_eq!(nested, 18, "nested subcommands found in the help texts");
}

async fn printing_to_a_closed_pipe_exits_quietly(db: TestDb) {
    users_add(&db, "ann@example.com", &[]);
    for args in [
        &["users", "list", "--json"][..],
        &["users", "list"],
        &["events", "list"],
        &["devices", "list", "--json"],
        &["config"],
    ] {
        // The reader is gone before the command writes anything: `| head -0`, in effect.
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_oncall-relay"))
            .args(db.cli_args())
            .args(args)
            .env_remove("AUTH_TOKEN")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.trim().is_empty(), "{args:?}: quiet, got {stderr}");
    }
}
db_test!(printing_to_a_closed_pipe_exits_quietly);

/// Splits a shell line into words (single quotes only, which is all the README uses).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

#[test]
fn readme_quick_start_can_be_run_twice() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let section = readme
        .split("## Quick start")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("quick start section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("first code block");
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        !lines[0].contains(" -q "),
        "the first build shows its progress: {}",
        lines[0]
    );
    assert!(
        !block.contains("--auth-token"),
        "no token on the command line"
    );
    let serve = lines
        .iter()
        .find(|l| l.contains(" serve"))
        .expect("serve line");
    assert!(
        serve.starts_with("ONCALL_RELAY_APP__AUTH_TOKEN="),
        "{serve}"
    );
    let add = lines
        .iter()
        .find(|l| l.contains("users add"))
        .expect("users add line");
    let args: Vec<String> = shell_words(add)
        .into_iter()
        .skip_while(|w| w != "--")
        .skip(1)
        .collect();
    let dir = tempfile::tempdir().expect("dir");
    for run in 1..=2 {
        let out = relay_in(dir.path(), &args);
        assert!(
            out.status.success(),
            "run {run} of `{add}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = relay_in(dir.path(), ["users", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list.as_array().expect("list").len(), 1);
}
