//! The real binary as its own process.

use std::process::Output;
use std::time::Duration;

use super::{Db, TOKEN, TestDb};

/// The real binary running `serve` on `db`, delivering to a webhook, as its own process.
pub struct RelayProcess {
    pub child: tokio::process::Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl RelayProcess {
    /// Starts `oncall-relay serve` with a 2 s lease and `extra_yaml` appended to its config,
    /// and waits until it listens.
    pub async fn spawn(db: &TestDb, webhook_url: &str, extra_yaml: &str) -> RelayProcess {
        RelayProcess::spawn_with_queue(db, webhook_url, "", extra_yaml).await
    }

    /// Like [`RelayProcess::spawn`], with `queue_yaml` (lines indented by two spaces) added to
    /// its `queue` section.
    pub async fn spawn_with_queue(
        db: &TestDb,
        webhook_url: &str,
        queue_yaml: &str,
        extra_yaml: &str,
    ) -> RelayProcess {
        let dir = tempfile::tempdir().expect("dir");
        let config = dir.path().join("relay.yml");
        let db_yaml = match db.kind {
            Db::Sqlite => format!("  driver: sqlite\n  path: '{}'\n", db.settings.path),
            Db::Postgres => format!(
                "  driver: postgres\n  url: '{}'\n",
                db.settings.url.expose()
            ),
        };
        std::fs::write(
            &config,
            format!(
                "app:\n  port: '127.0.0.1:0'\n  auth_token: '{TOKEN}'\n  log_level: info\ndb:\n{db_yaml}\
                 queue:\n  lease: 2s\n  poll_interval: 100ms\n{queue_yaml}\
                 plugin:\n  backend: hook\n  backends:\n    hook:\n      type: webhook\n      url: '{webhook_url}'\n      timeout: 1500ms\n\
                 {extra_yaml}"
            ),
        )
        .expect("config");
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_oncall-relay"));
        cmd.arg("--config").arg(&config);
        let (child, mut lines) = spawn_serve(&mut cmd, std::process::Stdio::inherit());
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.expect("read") {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "oncall-relay listening"
                {
                    return v["address"].as_str().expect("address").to_string();
                }
            }
            panic!("relay exited before listening");
        })
        .await
        .expect("relay starts");
        // Keep reading its log, so a full pipe never slows it down.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        RelayProcess {
            child,
            addr,
            _dir: dir,
        }
    }

    /// SIGKILL: no drain, no goodbye.
    pub async fn kill(&mut self) {
        self.child.start_kill().expect("kill");
        let _ = self.child.wait().await;
    }
}

/// The lines the binary logs to stdout.
pub type LogLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Starts `cmd` (the binary, set up) as `serve`, its stderr going to `stderr`: the process
/// and the lines of its log.
pub fn spawn_serve(
    cmd: &mut tokio::process::Command,
    stderr: std::process::Stdio,
) -> (tokio::process::Child, LogLines) {
    use tokio::io::AsyncBufReadExt;
    let mut child = cmd
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn relay");
    let stdout = child.stdout.take().expect("stdout");
    (child, tokio::io::BufReader::new(stdout).lines())
}

/// The binary with `db`'s database flags and `args`, waited for.
pub fn relay(db: &TestDb, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_oncall-relay"));
    cmd.args(db.cli_args()).args(args).env_remove("AUTH_TOKEN");
    cmd.output().expect("run oncall-relay")
}

/// `users add --email {email} {more}` on `db`, which must succeed: its output.
pub fn users_add(db: &TestDb, email: &str, more: &[&str]) -> String {
    let mut args = vec!["users", "add", "--email", email];
    args.extend_from_slice(more);
    ok(&relay(db, &args))
}

/// The arguments of `notify test` sending an SMS to `email`.
pub fn notify_test_sms(email: &str) -> [&str; 6] {
    ["notify", "test", "--user", email, "--kind", "sms"]
}

/// The stdout of a run that must have succeeded.
pub fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The JSON a run of the binary with `db`'s flags and `args` printed; the run must succeed.
pub fn relay_json(db: &TestDb, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(&relay(db, args))).expect("json")
}
