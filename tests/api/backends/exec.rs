//! The exec backend: argv from templates (never a shell), stdin JSON, environment, exit codes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use oncall_relay::config::{BackendSettings, ExecSettings, Secret, Settings};

use super::{
    Conformance, LONG_SMS, Message, SMS, Spoil, assert_shortened_to_segments, refused, to_alice,
    with_backend,
};
use crate::db_test;
use crate::helpers::*;

/// Dumps its argv (one file per argument), stdin and environment (NUL-separated) into
/// `$OUT_DIR`; fails the first `$FAIL_TIMES` runs with `$FAIL_CODE`, hangs the first
/// `$HANG_TIMES` runs (after starting a background `sleep` whose pid goes to `$CHILD_PIDFILE`,
/// when set).
const SCRIPT: &str = r#"#!/bin/sh
out="$OUT_DIR"
n=$(cat "$out/count" 2>/dev/null || echo 0)
n=$((n + 1))
printf '%s' "$n" > "$out/count"
if [ "$n" -le "${HANG_TIMES:-0}" ]; then
  if [ -n "$CHILD_PIDFILE" ]; then
    sleep 30 &
    echo $! > "$CHILD_PIDFILE"
  fi
  exec sleep 30
fi
i=0
for a in "$@"; do
  i=$((i + 1))
  printf '%s' "$a" > "$out/arg$i"
done
printf '%s' "$#" > "$out/argc"
cat > "$out/stdin"
env -0 > "$out/env"
if [ "$n" -le "${FAIL_TIMES:-0}" ]; then
  echo "gateway busy (run $n)" >&2
  exit "${FAIL_CODE:-1}"
fi
exit 0
"#;

struct Program {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Program {
    fn new() -> Program {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sh");
        std::fs::write(&path, SCRIPT).expect("write script");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        Program { dir, path }
    }

    fn out(&self) -> &Path {
        self.dir.path()
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.out().join(file))
            .unwrap_or_else(|e| panic!("{file} was not written: {e}"))
    }

    fn argv(&self) -> Vec<String> {
        let argc: usize = self.read("argc").parse().expect("argc");
        (1..=argc).map(|i| self.read(&format!("arg{i}"))).collect()
    }

    fn env(&self) -> BTreeMap<String, String> {
        self.read("env")
            .split('\0')
            .filter(|kv| !kv.is_empty())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn runs(&self) -> u32 {
        self.read("count").parse().expect("count")
    }

    fn settings(&self, args: &[&str], env: &[(&str, &str)]) -> ExecSettings {
        let mut vars: BTreeMap<String, Secret> = env
            .iter()
            .map(|(k, v)| (k.to_string(), Secret(v.to_string())))
            .collect();
        vars.insert("OUT_DIR".into(), Secret(self.out().display().to_string()));
        ExecSettings {
            command: self.path.display().to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: vars,
            permanent_exit_codes: vec![2],
            timeout: Duration::from_secs(5),
            max_segments: None,
        }
    }
}

/// The settings of `db`, delivering through the program `e` describes.
fn use_exec(db: &TestDb, e: ExecSettings) -> Settings {
    with_backend(db, "script", BackendSettings::Exec(e))
}

async fn exec_shell_metacharacters_arrive_verbatim_and_run_nothing(db: TestDb) {
    let program = Program::new();
    let canary = program.out().join("pwned");
    let message = format!(
        r#"$(touch {0}); rm -rf / ; `touch {0}` "quotes" 'single' | & > < $HOME ${{PATH}} \n"#,
        canary.display()
    );
    let s = use_exec(
        &db,
        program.settings(&["{{ message }}", "{{ title }}"], &[]),
    );
    let (app, events) = deliver_to_alice(s, "/api/v1/make_call", &message).await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    assert_eq!(program.argv(), [message.as_str(), message.as_str()]);
    let stdin: serde_json::Value = serde_json::from_str(&program.read("stdin")).expect("JSON");
    assert_eq!(stdin["message"], message.as_str());
    let env = program.env();
    assert_eq!(env["ONCALL_RELAY_MESSAGE"], message);
    assert_eq!(env["ONCALL_RELAY_KIND"], "call");
    assert_eq!(env["ONCALL_RELAY_IMPORTANT"], "true");
    assert!(
        !canary.exists(),
        "a command in the message was executed: {}",
        canary.display()
    );
    app.stop().await;
}
db_test!(exec_shell_metacharacters_arrive_verbatim_and_run_nothing);

/// A program feeding an SMS gateway gets the text shortened to its `max_segments`, in its
/// arguments, its environment and its stdin alike.
async fn exec_sms_gateway_gets_text_within_max_segments(db: TestDb) {
    let program = Program::new();
    let s = use_exec(
        &db,
        ExecSettings {
            max_segments: Some(3),
            ..program.settings(&["{{ message }}"], &[])
        },
    );
    let message = LONG_SMS.repeat(8);
    let (app, events) = deliver_to_alice(s, SMS, &message).await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    let sent = &program.argv()[0];
    assert_shortened_to_segments(&message, sent, 3);
    assert_eq!(&program.env()["ONCALL_RELAY_MESSAGE"], sent);
    let stdin: serde_json::Value = serde_json::from_str(&program.read("stdin")).expect("JSON");
    assert_eq!(stdin["message"], sent.as_str());
    app.stop().await;
}
db_test!(exec_sms_gateway_gets_text_within_max_segments);

async fn exec_a_hanging_program_is_killed_and_retried(db: TestDb) {
    let program = Program::new();
    let mut e = program.settings(&[], &[("HANG_TIMES", "1")]);
    e.timeout = Duration::from_millis(500);
    let s = use_exec(&db, e);
    let (app, events) = deliver_to_alice(s, "/api/v1/send_sms", "slow").await;
    let e = &events[0];
    assert_eq!(e.status, "delivered", "{e:?}");
    assert_eq!(e.attempts, 2);
    let first = attempt_error(e, 0);
    assert!(first.contains("killed"), "{first}");
    app.stop().await;
}
db_test!(exec_a_hanging_program_is_killed_and_retried);

/// Whether `pid` still runs (a zombie waiting for a parent that does not reap counts as ended).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

async fn exec_a_timeout_ends_what_the_program_started(db: TestDb) {
    let program = Program::new();
    let pidfile = program.out().join("child.pid");
    let mut e = program.settings(
        &[],
        &[
            ("HANG_TIMES", "1"),
            ("CHILD_PIDFILE", &pidfile.display().to_string()),
        ],
    );
    e.timeout = Duration::from_millis(500);
    let s = use_exec(&db, e);
    let (app, events) = deliver_to_alice(s, "/api/v1/send_sms", "slow").await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    let pid = program.read("child.pid").trim().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while running(&pid) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let alive = running(&pid);
    if alive {
        let _ = std::process::Command::new("kill").arg(&pid).status();
    }
    assert!(
        !alive,
        "the background child {pid} outlived the killed program"
    );
    app.stop().await;
}
db_test!(exec_a_timeout_ends_what_the_program_started);

/// `serve` starts with a shell running a templated script, but warns about it.
#[tokio::test(flavor = "current_thread")]
async fn exec_a_shell_with_a_templated_script_is_warned_about_at_start() {
    let (logs, _guard) = capture_logs();
    let db = TestDb::new(Db::Sqlite).await;
    let s = use_exec(
        &db,
        ExecSettings {
            command: "sh".into(),
            args: vec!["-c".into(), "echo '{{ message }}'".into()],
            env: BTreeMap::new(),
            permanent_exit_codes: vec![2],
            timeout: Duration::from_secs(2),
            max_segments: None,
        },
    );
    let app = TestApp::spawn(s).await;
    app.stop().await;
    let text = String::from_utf8_lossy(&logs.lock().expect("lock")).to_string();
    assert!(text.contains("unsafe backend configuration"), "{text}");
    assert!(text.contains("`sh` runs a templated script"), "{text}");
}

const ARGS: &[&str] = &["--to", "{{ phone }}", "{{ kind }}: {{ message }}", "plain"];
const TEXT: &str = "Disk full on db-1\nsecond line";

/// The conformance row: exit code 2 is permanent, any other failure transient.
pub struct Row {
    program: Program,
    /// `FAIL_TIMES`/`FAIL_CODE` for the script.
    failing: Mutex<Vec<(&'static str, &'static str)>>,
}

impl Conformance for Row {
    type Settings = ExecSettings;
    const WRAP: fn(ExecSettings) -> BackendSettings = BackendSettings::Exec;
    const NAME: &'static str = "script";
    const SENDS: &'static [Message] = &[to_alice(SMS, TEXT)];
    const PERMANENT_ERROR: &'static [&'static str] = &["exit status 2", "gateway busy (run 1)"];
    const TRANSIENT_ERROR: &'static [&'static str] = &["exit status 75"];
    const SECRETS: &'static [&'static str] = &["k3y"];
    const SPOILED: &'static [Spoil<ExecSettings>] = &[
        (|s| s.command = "/nonexistent/notify.sh".into(), "`command`"),
        (|s| s.args = vec!["{{ message ".into()], "`args[0]`"),
        (
            |s| {
                let kind = Secret("x".into());
                s.env.insert("ONCALL_RELAY_KIND".into(), kind);
            },
            "`env.ONCALL_RELAY_KIND`",
        ),
        (
            |s| s.permanent_exit_codes = vec![0, 2],
            "`permanent_exit_codes`",
        ),
        (|s| s.max_segments = Some(0), "`max_segments`"),
    ];

    async fn start() -> Self {
        Row {
            program: Program::new(),
            failing: Mutex::new(Vec::new()),
        }
    }
    fn base(&self) -> ExecSettings {
        let mut env = vec![("GATEWAY_KEY", "k3y")];
        env.extend(self.failing.lock().expect("lock").iter().copied());
        self.program.settings(ARGS, &env)
    }
    fn fail_permanently(&self) {
        *self.failing.lock().expect("lock") = vec![("FAIL_TIMES", "99"), ("FAIL_CODE", "2")];
    }
    fn fail_once(&self) {
        *self.failing.lock().expect("lock") = vec![("FAIL_TIMES", "1"), ("FAIL_CODE", "75")];
    }
    fn seen(&self) -> usize {
        self.program.runs() as usize
    }
    fn assert_sent(&self, events: &[NotificationRecord], user: &User) {
        let (program, e) = (&self.program, &events[0]);
        assert_eq!(
            program.argv(),
            [
                "--to",
                "+4930123456",
                "sms: Disk full on db-1\nsecond line",
                "plain"
            ]
        );
        let stdin: serde_json::Value = serde_json::from_str(&program.read("stdin")).expect("JSON");
        assert_eq!(stdin["id"], e.id);
        assert_eq!(stdin["kind"], "sms");
        assert_eq!(stdin["message"], TEXT);
        assert_eq!(stdin["phone"], "+4930123456");
        assert_eq!(stdin["email"], "alice@example.com");
        assert_eq!(stdin["user"]["id"], user.id.as_str());
        assert_eq!(stdin["title"], "Disk full on db-1");
        assert_eq!(stdin["attempt"], 1);

        let env = program.env();
        let expected = [
            ("ONCALL_RELAY_KIND", "sms".to_string()),
            ("ONCALL_RELAY_ID", e.id.to_string()),
            ("ONCALL_RELAY_MESSAGE", TEXT.into()),
            ("ONCALL_RELAY_PHONE", "+4930123456".into()),
            ("ONCALL_RELAY_EMAIL", "alice@example.com".into()),
            ("ONCALL_RELAY_NAME", "Alice".into()),
            ("ONCALL_RELAY_USER_ID", user.id.clone()),
            ("ONCALL_RELAY_TITLE", "Disk full on db-1".into()),
            ("ONCALL_RELAY_IMPORTANT", "false".into()),
            ("ONCALL_RELAY_ATTEMPT", "1".into()),
            ("GATEWAY_KEY", "k3y".into()),
        ];
        for (key, value) in expected {
            assert_eq!(env.get(key), Some(&value), "{key}");
        }
        // The relay's own environment (database URL, tokens) is not passed on.
        let allowed = [
            "PATH",
            "HOME",
            "LANG",
            "LC_ALL",
            "TZ",
            "TMPDIR",
            "OUT_DIR",
            "GATEWAY_KEY",
            // Set by the shell itself.
            "PWD",
            "OLDPWD",
            "SHLVL",
            "_",
        ];
        for key in env.keys() {
            assert!(
                key.starts_with("ONCALL_RELAY_") || allowed.contains(&key.as_str()),
                "{key} leaked into the program's environment"
            );
        }
    }
    fn bad_settings(&self) -> Vec<(BackendSettings, &'static str)> {
        // A folder, not a program: only this fake knows where one is.
        let mut folder = self.base();
        folder.command = self.program.out().display().to_string();
        let mut cases = refused(Self::WRAP, self.base(), Self::SPOILED);
        cases.push((BackendSettings::Exec(folder), "`command`"));
        cases
    }
}
