//! The `oncall-relay` binary: user management, events, configuration errors.

use std::process::Output;

use crate::db_test;
use crate::helpers::*;

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

async fn users_can_be_managed_without_sql(db: Db) {
    let db = TestDb::new(db).await;
    ok(&relay(
        &db,
        &[
            "users",
            "add",
            "--email",
            "Ann@Example.com",
            "--phone",
            "+49 30 123456",
            "--role",
            "admin",
            "--name",
            "Ann",
        ],
    ));
    let out = relay(&db, &["users", "add", "--email", "ann@example.com"]);
    assert!(
        !out.status.success(),
        "duplicate email (case-insensitive) refused"
    );
    let out = relay(
        &db,
        &[
            "users",
            "add",
            "--email",
            "bad@example.com",
            "--phone",
            "12ab",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("phone_number"),
        "names the field"
    );

    let list: serde_json::Value =
        serde_json::from_str(&ok(&relay(&db, &["users", "list", "--json"]))).expect("json");
    assert_eq!(list.as_array().expect("list").len(), 1);
    assert_eq!(list[0]["phone_number"], "+4930123456");
    assert_eq!(list[0]["role"], "admin");

    ok(&relay(
        &db,
        &[
            "users",
            "update",
            "ann@example.com",
            "--no-phone",
            "--role",
            "observer",
        ],
    ));
    let list: serde_json::Value =
        serde_json::from_str(&ok(&relay(&db, &["users", "list", "--json"]))).expect("json");
    assert!(list[0]["phone_number"].is_null());
    assert_eq!(list[0]["role"], "viewer");

    let dir = tempfile::tempdir().expect("dir");
    let csv = dir.path().join("users.csv");
    std::fs::write(
        &csv,
        "email,phone,name,role,id\nann@example.com,+4930654321,Ann,admin,\nbob@example.com,+12025550143,Bob,user,legacy-42\n",
    )
    .expect("write");
    let first = ok(&relay(
        &db,
        &["users", "import", csv.to_str().expect("path")],
    ));
    assert!(first.contains("1 added, 1 updated, 0 unchanged"), "{first}");
    let again = ok(&relay(
        &db,
        &["users", "import", csv.to_str().expect("path")],
    ));
    assert!(
        again.contains("0 added, 0 updated, 2 unchanged"),
        "idempotent: {again}"
    );

    let yaml = dir.path().join("users.yml");
    std::fs::write(
        &yaml,
        "- email: carol@example.com\n  phone_number: '+33 1 23 45 67 89'\n",
    )
    .expect("write");
    ok(&relay(
        &db,
        &["users", "import", yaml.to_str().expect("path")],
    ));

    let list: serde_json::Value =
        serde_json::from_str(&ok(&relay(&db, &["users", "list", "--json"]))).expect("json");
    let bob = list
        .as_array()
        .expect("list")
        .iter()
        .find(|u| u["email"] == "bob@example.com")
        .expect("bob");
    assert_eq!(bob["id"], "legacy-42", "imported id kept");
    assert_eq!(bob["role"], "editor");
    assert_eq!(list.as_array().expect("list").len(), 3);

    ok(&relay(
        &db,
        &[
            "users",
            "update",
            "bob@example.com",
            "--contact",
            "telegram=12345",
            "--contact",
            "email=bob@work.example",
        ],
    ));
    let list: serde_json::Value =
        serde_json::from_str(&ok(&relay(&db, &["users", "list", "--json"]))).expect("json");
    let bob = list
        .as_array()
        .expect("list")
        .iter()
        .find(|u| u["email"] == "bob@example.com")
        .expect("bob");
    assert_eq!(
        bob["contacts"],
        serde_json::json!({"email": "bob@work.example", "telegram": "12345"})
    );
    let out = relay(
        &db,
        &[
            "users",
            "update",
            "bob@example.com",
            "--contact",
            "bad key=1",
        ],
    );
    assert!(!out.status.success(), "contact names are checked");

    ok(&relay(&db, &["users", "remove", "legacy-42"]));
    let list: serde_json::Value =
        serde_json::from_str(&ok(&relay(&db, &["users", "list", "--json"]))).expect("json");
    assert_eq!(list.as_array().expect("list").len(), 2);
}
db_test!(users_can_be_managed_without_sql);

async fn events_list_filters_by_user_and_status(db: Db) {
    let db = TestDb::new(db).await;
    let mut s = settings(&db);
    s.queue.deliver = false;
    let app = TestApp::spawn(s).await;
    app.add_user("a@example.com", Some("+4930123456")).await;
    app.add_user("b@example.com", Some("+4930123457")).await;
    for email in ["a@example.com", "b@example.com", "a@example.com"] {
        app.send_ok("/api/v1/send_sms", email, "x").await;
    }
    app.stop().await;
    let all: serde_json::Value =
        serde_json::from_str(&ok(&relay(&db, &["events", "list", "--json"]))).expect("json");
    assert_eq!(all.as_array().expect("list").len(), 3);
    // One vocabulary with templates and the stdout backend: `kind` and `phone`.
    assert_eq!(all[0]["kind"], "sms");
    assert!(all[0]["phone"].is_string(), "{}", all[0]);
    assert!(all[0].get("phone_number").is_none(), "{}", all[0]);
    let a: serde_json::Value = serde_json::from_str(&ok(&relay(
        &db,
        &[
            "events",
            "list",
            "--json",
            "--user",
            "A@example.com",
            "--status",
            "queued",
            "--since",
            "1h",
        ],
    )))
    .expect("json");
    assert_eq!(a.as_array().expect("list").len(), 2);
    let none: serde_json::Value = serde_json::from_str(&ok(&relay(
        &db,
        &["events", "list", "--json", "--status", "delivered"],
    )))
    .expect("json");
    assert_eq!(none.as_array().expect("list").len(), 0);
    let out = relay(&db, &["events", "list", "--status", "lost"]);
    assert!(!out.status.success());
}
db_test!(events_list_filters_by_user_and_status);

#[test]
fn serve_refuses_to_start_without_a_token() {
    let dir = tempfile::tempdir().expect("dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oncall-relay"))
        .current_dir(dir.path())
        .env_remove("AUTH_TOKEN")
        .env_remove("ONCALL_RELAY_APP__AUTH_TOKEN")
        .args(["serve", "--port", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("app.auth_token") && err.contains("allow_any_token"),
        "{err}"
    );
}

#[test]
fn unknown_option_is_a_startup_error_naming_it() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = dir.path().join("c.yml");
    std::fs::write(&cfg, "app:\n  auth_token: x\n  portt: ':1'\n").expect("write");
    let out = relay_in(
        dir.path(),
        ["--config", cfg.to_str().expect("path"), "serve"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("portt"), "{err}");
}

/// Every subcommand of `oncall-relay`; a new one must be added here, and so gets its help checked.
const SUBCOMMANDS: [&str; 9] = [
    "serve",
    "users",
    "events",
    "devices",
    "integrations",
    "schedules",
    "notify",
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
    // users 5, events 1, devices 3, integrations 1, schedules 4, notify 1.
    assert_eq!(nested, 15, "nested subcommands found in the help texts");
}

async fn devices_can_be_assigned_listed_and_removed(db: Db) {
    let db = TestDb::new(db).await;
    ok(&relay(
        &db,
        &[
            "users",
            "add",
            "--email",
            "ann@example.com",
            "--phone",
            "+4930123456",
        ],
    ));
    let out = relay(
        &db,
        &["devices", "add", "tok-1", "--user", "nobody@example.com"],
    );
    assert!(!out.status.success(), "unknown user refused");
    ok(&relay(
        &db,
        &[
            "devices",
            "add",
            "tok-1",
            "--user",
            "ann@example.com",
            "--label",
            "Ann's phone",
        ],
    ));
    let list: serde_json::Value =
        serde_json::from_str(&ok(&relay(&db, &["devices", "list", "--json"]))).expect("json");
    assert_eq!(list.as_array().expect("list").len(), 1);
    assert_eq!(list[0]["token"], "tok-1");
    assert_eq!(list[0]["label"], "Ann's phone");
    assert!(
        list[0]["user_id"]
            .as_str()
            .expect("assigned")
            .starts_with('U')
    );
    ok(&relay(&db, &["devices", "remove", "tok-1"]));
    let list: serde_json::Value =
        serde_json::from_str(&ok(&relay(&db, &["devices", "list", "--json"]))).expect("json");
    assert_eq!(list.as_array().expect("list").len(), 0);
    let out = relay(&db, &["integrations", "list"]);
    assert!(out.status.success());
}
db_test!(devices_can_be_assigned_listed_and_removed);

fn write_config(dir: &tempfile::TempDir, yaml: &str) -> String {
    let path = dir.path().join("relay.yml");
    std::fs::write(&path, yaml).expect("write config");
    path.display().to_string()
}

async fn notify_test_walks_the_real_route(db: Db) {
    let db = TestDb::new(db).await;
    let (broken, working) = (Fake::start().await, Fake::start().await);
    broken.script(&[], Reply::Status(500));
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(
        &dir,
        &format!(
            "plugin:\n  backends:\n    gw:\n      type: webhook\n      url: '{}'\n    chat:\n      type: webhook\n      url: '{}'\n  routes:\n    sms:\n      - backend: gw\n      - backend: chat\n",
            broken.url, working.url
        ),
    );
    ok(&relay(
        &db,
        &[
            "users",
            "add",
            "--email",
            "ann@example.com",
            "--phone",
            "+4930123456",
        ],
    ));
    let args: Vec<String> = [
        "--config",
        &config,
        "notify",
        "test",
        "--user",
        "ann@example.com",
        "--kind",
        "sms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let db_args = db.cli_args();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_oncall-relay"))
            .args(db_args)
            .args(args)
            .output()
            .expect("run")
    })
    .await
    .expect("join");
    let text = ok(&out);
    assert!(text.contains("fallback via gw"), "{text}");
    assert!(text.contains("delivered via chat"), "{text}");
    assert_eq!(broken.requests().len(), 1, "each step tried once");
    assert_eq!(working.requests().len(), 1);
    assert!(
        working.requests()[0].json()["message"]
            .as_str()
            .expect("message")
            .contains("Test sms")
    );
    let events: serde_json::Value =
        serde_json::from_str(&ok(&relay(&db, &["events", "list", "--json"]))).expect("json");
    assert_eq!(events[0]["status"], "delivered");
    assert_eq!(events[0]["backend"], "chat");
}
db_test!(notify_test_walks_the_real_route);

#[test]
fn check_config_reports_a_broken_template_and_passes_a_good_file() {
    let dir = tempfile::tempdir().expect("dir");
    let run = |yaml: &str| {
        let config = write_config(&dir, yaml);
        relay_in(dir.path(), ["--config", &config, "check-config"])
    };
    let out = run(
        "app:\n  auth_token: x\nplugin:\n  backends:\n    gw:\n      type: webhook\n      url: http://127.0.0.1:9/\n      body: '{{ phone '\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gw") && err.contains("body"), "{err}");
    let out = run(
        "app:\n  auth_token: x\nplugin:\n  backend: gw\n  backends:\n    gw:\n      type: webhook\n      url: http://127.0.0.1:9/\n  routes:\n    sms:\n      - backend: gw\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("configuration OK") && text.contains("route sms: gw"),
        "{text}"
    );
}

#[test]
fn check_config_warns_about_a_shell_running_a_templated_script() {
    let dir = tempfile::tempdir().expect("dir");
    let run = |args: &str| {
        let config = write_config(
            &dir,
            &format!(
                "app:\n  auth_token: x\nplugin:\n  backend: script\n  backends:\n    script:\n      type: exec\n      command: sh\n      args: {args}\n"
            ),
        );
        let out = relay_in(dir.path(), ["--config", &config, "check-config"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let unsafe_form = run(r#"["-c", "send --text '{{ message }}'"]"#);
    assert!(
        unsafe_form.contains("warning: backend `script`: `sh` runs a templated script"),
        "{unsafe_form}"
    );
    let safe_form = run(r#"["-c", "send --text \"$1\"", "sh", "{{ message }}"]"#);
    assert!(safe_form.contains("configuration OK"), "{safe_form}");
    assert!(!safe_form.contains("templated script"), "{safe_form}");
}

#[test]
fn config_command_hides_every_secret() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(
        &dir,
        "app:\n  auth_token: tok-AAAA\ndb:\n  password: pw-BBBB\n  url: 'postgres://u:pw-CCCC@db/x'\nplugin:\n  backends:\n    gw:\n      type: webhook\n      url: 'https://gw.example/send?key=key-DDDD'\n      headers:\n        X-Api-Key: hdr-EEEE\n      bearer_token: tok-FFFF\n      signing_secret: sec-GGGG\n",
    );
    let out = relay_in(dir.path(), ["--config", &config, "config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for secret in ["AAAA", "BBBB", "CCCC", "DDDD", "EEEE", "FFFF", "GGGG"] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    assert!(text.contains("https://gw.example/***"), "{text}");
    assert!(text.contains("postgres://db/***"), "{text}");
}

/// Kubernetes sets these for a Service named `oncall-relay`; none of them is an option.
const SERVICE_LINK_VARS: [(&str, &str); 7] = [
    ("ONCALL_RELAY_PORT", "tcp://10.96.0.17:8880"),
    ("ONCALL_RELAY_SERVICE_HOST", "10.96.0.17"),
    ("ONCALL_RELAY_SERVICE_PORT", "8880"),
    ("ONCALL_RELAY_SERVICE_PORT_HTTP", "8880"),
    ("ONCALL_RELAY_PORT_8880_TCP", "tcp://10.96.0.17:8880"),
    ("ONCALL_RELAY_PORT_8880_TCP_ADDR", "10.96.0.17"),
    ("ONCALL_RELAY_PORT_8880_TCP_PROTO", "tcp"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_with_kubernetes_service_variables_set() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().expect("dir");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_oncall-relay"))
        .current_dir(dir.path())
        .env_remove("AUTH_TOKEN")
        .envs(SERVICE_LINK_VARS)
        .env("ONCALL_RELAY_APP__AUTH_TOKEN", TOKEN)
        .env("ONCALL_RELAY_APP__PORT", "127.0.0.1:0")
        .env("ONCALL_RELAY_APP__LOG_LEVEL", "info")
        .env("ONCALL_RELAY_DB__PATH", dir.path().join("relay.db"))
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn relay");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut log = Vec::new();
    let addr = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == "oncall-relay listening" {
                return Some(v["address"].as_str().expect("address").to_string());
            }
            log.push(line);
        }
        None
    })
    .await
    .expect("relay starts in time");
    let Some(addr) = addr else {
        let _ = child.kill().await;
        let out = child.wait_with_output().await.expect("output");
        panic!(
            "relay exited before listening: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    oncall_relay::install_crypto_provider();
    let resp = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(resp.status().as_u16(), 200);
    let warning = log
        .iter()
        .find(|l| l.contains("name no option"))
        .unwrap_or_else(|| panic!("one warning names the ignored variables: {log:?}"));
    for (name, value) in SERVICE_LINK_VARS {
        assert!(warning.contains(name), "{name} named: {warning}");
        if value.contains("10.96") {
            assert!(!warning.contains(value), "values never logged: {warning}");
        }
    }
    assert_eq!(
        log.iter().filter(|l| l.contains("name no option")).count(),
        1,
        "warned once"
    );
    let _ = child.kill().await;
}

#[test]
fn a_known_option_with_a_bad_value_still_stops_serve_naming_the_variable() {
    let dir = tempfile::tempdir().expect("dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_oncall-relay"))
        .current_dir(dir.path())
        .envs(SERVICE_LINK_VARS)
        .env("ONCALL_RELAY_APP__AUTH_TOKEN", TOKEN)
        .env("ONCALL_RELAY_APP__PORT", "99999")
        .arg("serve")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("environment variable `ONCALL_RELAY_APP__PORT`"),
        "{err}"
    );
    assert!(!err.contains("untagged") && !err.contains(".rs:"), "{err}");
}

#[test]
fn check_config_fails_for_whatever_stops_serve() {
    let dir = tempfile::tempdir().expect("dir");
    let run = |yaml: &str| {
        let config = write_config(&dir, yaml);
        std::process::Command::new(env!("CARGO_BIN_EXE_oncall-relay"))
            .current_dir(dir.path())
            .env_remove("AUTH_TOKEN")
            .env_remove("ONCALL_RELAY_APP__AUTH_TOKEN")
            .args(["--config", &config, "check-config"])
            .output()
            .expect("run")
    };
    for (yaml, reason) in [
        ("app:\n  log_level: info\n", "app.auth_token"),
        (
            "app:\n  auth_token: x\n  log_level: loud\n",
            "app.log_level",
        ),
        (
            "app:\n  auth_token: x\ngrafana:\n  oncall:\n    schedules:\n      team:\n        ical_url: /ical\n        transport: carrier-pigeon\n",
            "team",
        ),
        (
            "app:\n  auth_token: x\ngrafana:\n  oncall:\n    schedules:\n      team:\n        ical_url: /ical\n        transport: callback\n",
            "callback_url",
        ),
    ] {
        let out = run(yaml);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml}: {stdout}");
        assert!(!stdout.contains("configuration OK"), "{yaml}: {stdout}");
        assert!(stderr.contains(reason), "{yaml}: {stderr}");
    }
    let out = run("app:\n  allow_any_token: true\n");
    assert!(
        out.status.success(),
        "allow_any_token starts without a token"
    );
}

async fn users_add_names_the_user_by_email_or_given_name(db: Db) {
    let db = TestDb::new(db).await;
    let out = ok(&relay(
        &db,
        &["users", "add", "--email", "alice@example.com"],
    ));
    assert!(out.starts_with("added alice@example.com "), "{out}");
    let out = ok(&relay(
        &db,
        &[
            "users",
            "add",
            "--email",
            "bob@example.com",
            "--name",
            "Bob B",
        ],
    ));
    assert!(out.starts_with("added Bob B <bob@example.com> "), "{out}");
}
db_test!(users_add_names_the_user_by_email_or_given_name);

async fn printing_to_a_closed_pipe_exits_quietly(db: Db) {
    let db = TestDb::new(db).await;
    ok(&relay(&db, &["users", "add", "--email", "ann@example.com"]));
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

/// A fresh PostgreSQL database holding the Go service's `oncall_users` table.
async fn emu_oncall_database(rows: &str) -> PgDatabase {
    use sqlx::{Connection, Executor};
    let db = PgDatabase::create("ort_emu").await;
    let url = db.url.clone();
    let mut conn = sqlx::postgres::PgConnection::connect(&url)
        .await
        .expect("connect");
    conn.execute(sqlx::AssertSqlSafe(format!(
        "CREATE TYPE user_role AS ENUM ('user', 'observer', 'admin'); \
         CREATE TABLE oncall_users (id serial PRIMARY KEY, user_id varchar(15), name varchar(255), \
         username varchar(255), email varchar(255), phone_number varchar(20), active bool, \
         role user_role); \
         INSERT INTO oncall_users (user_id, name, username, email, phone_number, active, role) VALUES {rows}"
    )))
    .await
    .expect("fill oncall_users");
    conn.close().await.expect("close");
    db
}

async fn users_move_over_from_the_go_service_table(db: Db) {
    if skip_postgres() {
        return;
    }
    let db = TestDb::new(db).await;
    // Already in the relay: keeps its own id, takes the Go service's fields.
    ok(&relay(&db, &["users", "add", "--email", "eve@example.com"]));
    // Someone else already has this id: that row is skipped, and the rest still goes in
    // (on PostgreSQL a failed INSERT would have aborted the whole transaction).
    ok(&relay(
        &db,
        &[
            "users",
            "add",
            "--email",
            "zed@example.com",
            "--id",
            "UZED8",
        ],
    ));
    let source_db = emu_oncall_database(
        "('UANN1', 'Ann', 'ann', 'ann@example.com', '+49 30 123456', true, 'admin'), \
         ('UBOB2', 'Bob', 'bob', 'bob@example.com', '0012025550143', true, 'user'), \
         ('UCAR3', 'Carol', 'carol', 'carol@example.com', NULL, false, 'observer'), \
         ('UDAN4', 'Dan', 'dan', 'dan@example.com', '12345', true, 'user'), \
         ('UNOM5', 'No Mail', 'nomail', NULL, '+4930123457', true, 'user'), \
         ('UDUP6', 'Ann Again', 'ann2', 'ANN@example.com', '+4930123458', true, 'user'), \
         ('UEVE7', 'Eve', 'eve', 'eve@example.com', '+4930123459', true, 'admin'), \
         ('UZED8', 'Other', 'other', 'other@example.com', '+4930123460', true, 'user')",
    )
    .await;
    let source = source_db.url.clone();
    let first = ok(&relay(
        &db,
        &["users", "import", "--from-emu-oncall", &source],
    ));
    assert!(
        first.contains("(8 rows): 3 added, 1 updated, 0 unchanged, 4 skipped"),
        "{first}"
    );
    for (who, why) in [
        ("dan@example.com", "phone_number"),
        ("UNOM5", "missing email"),
        ("ANN@example.com", "duplicate email"),
        ("other@example.com", "UZED8"),
    ] {
        assert!(
            first
                .lines()
                .any(|l| l.contains("skipped") && l.contains(who) && l.contains(why)),
            "{who}: {why} in {first}"
        );
    }
    assert!(first.contains("UEVE7 is not applied"), "{first}");

    let list: serde_json::Value =
        serde_json::from_str(&ok(&relay(&db, &["users", "list", "--json"]))).expect("json");
    let user = |email: &str| {
        list.as_array()
            .expect("list")
            .iter()
            .find(|u| u["email"] == email)
            .unwrap_or_else(|| panic!("{email} imported: {list}"))
            .clone()
    };
    assert_eq!(list.as_array().expect("list").len(), 5);
    let ann = user("ann@example.com");
    assert_eq!(ann["id"], "UANN1", "user_id kept as the public id");
    assert_eq!(ann["phone_number"], "+4930123456");
    assert_eq!(ann["role"], "admin");
    assert_eq!(ann["name"], "Ann");
    let bob = user("bob@example.com");
    assert_eq!(bob["id"], "UBOB2");
    assert_eq!(bob["phone_number"], "+12025550143", "normalised to E.164");
    assert_eq!(bob["role"], "editor", "user → editor");
    let carol = user("carol@example.com");
    assert_eq!(carol["role"], "viewer", "observer → viewer");
    assert_eq!(carol["active"], false);
    assert!(carol["phone_number"].is_null());
    let eve = user("eve@example.com");
    assert_eq!(eve["phone_number"], "+4930123459");
    assert_eq!(eve["role"], "admin");

    let again = ok(&relay(
        &db,
        &["users", "import", "--from-emu-oncall", &source],
    ));
    assert!(
        again.contains("0 added, 0 updated, 4 unchanged, 4 skipped"),
        "idempotent: {again}"
    );
    let after: serde_json::Value =
        serde_json::from_str(&ok(&relay(&db, &["users", "list", "--json"]))).expect("json");
    assert_eq!(after, list, "a second run changes nothing");

    let out = relay(
        &db,
        &[
            "users",
            "import",
            "--from-emu-oncall",
            "postgres://postgres:s3cret-pw@127.0.0.1:1/none",
        ],
    );
    assert!(!out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("s3cret-pw"),
        "the password is never repeated"
    );
}
/// The Go service's table is on PostgreSQL, so both variants need it (and their names end
/// in `postgres`, which is how `scripts/test` leaves them out when there is none).
mod users_move_over_from_the_go_service_table {
    use crate::helpers::Db;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn into_sqlite_from_postgres() {
        super::users_move_over_from_the_go_service_table(Db::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::users_move_over_from_the_go_service_table(Db::Postgres).await
    }
}

/// `notify test --user ann@example.com --kind {kind}`: its output and its stderr.
fn notify_test(db: &TestDb, kind: &str) -> (Output, String) {
    let out = relay(
        db,
        &[
            "notify",
            "test",
            "--user",
            "ann@example.com",
            "--kind",
            kind,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, err)
}

/// `users update ann@example.com {args}`, which must succeed.
fn update_ann(db: &TestDb, args: &[&str]) {
    let mut all = vec!["users", "update", "ann@example.com"];
    all.extend_from_slice(args);
    ok(&relay(db, &all));
}

async fn notify_test_and_contacts_say_what_is_wrong(db: Db) {
    let db = TestDb::new(db).await;
    let out = relay(
        &db,
        &[
            "users",
            "add",
            "--email",
            "ann@example.com",
            "--contact",
            "route=nosuch",
        ],
    );
    assert!(!out.status.success(), "route naming no backend refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuch") && err.contains("stdout"), "{err}");
    ok(&relay(
        &db,
        &["users", "add", "--email", "ann@example.com", "--inactive"],
    ));
    let out = relay(
        &db,
        &[
            "users",
            "update",
            "ann@example.com",
            "--contact",
            "route=nosuch",
        ],
    );
    assert!(!out.status.success(), "update checks the route too");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuch"));
    update_ann(&db, &["--contact", "route=stdout"]);

    for (kind, why) in [("call", "inactive"), ("sms", "inactive")] {
        let (_, err) = notify_test(&db, kind);
        assert!(
            err.contains("warning") && err.contains(why) && err.contains("number-not-verified"),
            "{kind}: {err}"
        );
    }
    update_ann(&db, &["--active", "true"]);
    let (_, err) = notify_test(&db, "call");
    assert!(err.contains("no phone number"), "{err}");
    update_ann(&db, &["--phone", "+4930123456"]);
    let (out, err) = notify_test(&db, "call");
    assert!(out.status.success() && !err.contains("warning"), "{err}");
}
db_test!(notify_test_and_contacts_say_what_is_wrong);

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
