//! The `exec` backend: runs a local program per notification.
//!
//! The program is started directly, never through a shell: each configured argument is a
//! Jinja template rendered to exactly one argv element, so quotes, `$(...)`, `;` or `|` in an
//! alert title reach the program as plain text and cannot run anything. The notification is
//! also written as JSON to the program's stdin and passed as `ONCALL_RELAY_*` environment
//! variables.
//!
//! Exit 0 means delivered; an exit code listed in `permanent_exit_codes` (default `[2]`)
//! means retrying cannot help (the next route takes over at once); any other exit code, a
//! signal or the timeout is retried.
//!
//! On Unix the program runs in its own process group. When it does not finish in time (or the
//! delivery is cancelled), the whole group gets SIGTERM and, [`KILL_GRACE`] later, SIGKILL, so
//! whatever the program started in the background ends with it.
//!
//! The program does not inherit the relay's environment, which may hold the database
//! password and API tokens: it gets `PATH`, `HOME`, `LANG`, `LC_ALL`, `TZ` and `TMPDIR` from
//! it, the `ONCALL_RELAY_*` variables and the configured `env`.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minijinja::Environment;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use super::{Base, Deliver, DeliveryError, Setup, within};
use crate::config::{ExecSettings, Secret};
use crate::notify::template::{self, Context};
use crate::notify::{Notification, NotifyError};

mod shell;

pub(super) use shell::shell_warning;
/// Most bytes of the program's stderr (and stdout) kept for the error text.
const OUTPUT_CAP: usize = 4096;
/// Characters of that output that go into the recorded error.
const ERROR_CHARS: usize = 300;
/// How long pipes may stay open after the program exited (a background child holding them).
const PIPE_GRACE: Duration = Duration::from_millis(250);
/// Prefix of the variables describing the notification.
const ENV_PREFIX: &str = "ONCALL_RELAY_";
/// How long the program's process group has to exit after SIGTERM before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Variables taken over from the relay's own environment.
const INHERITED_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// Runs a program for each notification.
#[derive(Debug)]
pub struct Exec {
    base: Base,
    program: PathBuf,
    args: usize,
    env: Vec<(String, Secret)>,
    permanent_exit_codes: Vec<i32>,
    templates: Environment<'static>,
    max_segments: Option<usize>,
}

impl Exec {
    /// Validates the settings: the program exists and is executable, templates compile.
    pub fn new(cx: &Setup<'_>, s: &ExecSettings) -> Result<Exec, NotifyError> {
        let bad = cx.error();
        if s.command.trim().is_empty() {
            return Err(bad("`command` is required (a program path)".into()));
        }
        let program = resolve_program(&s.command).map_err(|e| bad(format!("`command`: {e}")))?;
        let mut templates = template::plain_environment();
        for (i, arg) in s.args.iter().enumerate() {
            template::add(&mut templates, &format!("args[{i}]"), arg).map_err(&bad)?;
        }
        let mut env = Vec::new();
        for (key, value) in &s.env {
            if key.is_empty()
                || key.contains('=')
                || key.contains('\0')
                || key.chars().next().is_some_and(|c| c.is_ascii_digit())
            {
                return Err(bad(format!(
                    "`env`: `{key}` is not an environment variable name"
                )));
            }
            if key.to_ascii_uppercase().starts_with(ENV_PREFIX) {
                return Err(bad(format!(
                    "`env.{key}`: names starting with `{ENV_PREFIX}` describe the notification"
                )));
            }
            if value.expose().contains('\0') {
                return Err(bad(format!("`env.{key}`: contains a NUL character")));
            }
            env.push((key.clone(), value.clone()));
        }
        if s.permanent_exit_codes.contains(&0) {
            return Err(bad(
                "`permanent_exit_codes`: 0 means delivered and cannot be listed".into(),
            ));
        }
        if s.timeout.is_zero() {
            return Err(bad("`timeout` must be more than 0".into()));
        }
        let max_segments = super::max_segments(cx, s.max_segments)?;
        Ok(Exec {
            max_segments,
            base: cx.base(s.timeout),
            program,
            args: s.args.len(),
            env,
            permanent_exit_codes: s.permanent_exit_codes.clone(),
            templates,
        })
    }

    fn command(&self, n: &Notification) -> Result<(Command, Vec<u8>), DeliveryError> {
        let n = &*super::fit_sms(n, self.max_segments);
        let ctx = Context::of(n);
        let value = ctx.value();
        let mut cmd = Command::new(&self.program);
        for i in 0..self.args {
            let arg = template::render(&self.templates, &format!("args[{i}]"), &value)?;
            cmd.arg(without_nul(&arg));
        }
        cmd.env_clear();
        for key in INHERITED_ENV {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        for (key, value) in &self.env {
            cmd.env(key, value.expose());
        }
        let vars = [
            ("KIND", n.kind.clone()),
            ("ID", n.id.to_string()),
            ("MESSAGE", n.message.clone()),
            ("PHONE", n.phone_number.clone().unwrap_or_default()),
            ("EMAIL", n.email.clone()),
            ("NAME", n.name.clone()),
            ("USER_ID", n.user_id.clone()),
            ("TITLE", n.title().to_string()),
            ("IMPORTANT", n.important().to_string()),
            ("ATTEMPT", n.attempt.to_string()),
            ("IDEMPOTENCY_KEY", super::idempotency_key(n)),
        ];
        for (key, value) in vars {
            cmd.env(format!("{ENV_PREFIX}{key}"), without_nul(&value));
        }
        // Through a `serde_json::Value`, so the keys are written sorted, as they always were.
        let stdin = serde_json::to_value(&ctx)
            .and_then(|v| serde_json::to_vec(&v))
            .map_err(|e| DeliveryError::Permanent(format!("cannot encode stdin: {e}")))?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Its own group, so that everything it starts can be ended with it.
        #[cfg(unix)]
        cmd.process_group(0);
        Ok((cmd, stdin))
    }

    async fn run(&self, n: &Notification) -> Result<(), DeliveryError> {
        let (mut cmd, input) = self.command(n)?;
        let child = cmd.spawn().map_err(|e| {
            let text = format!("cannot start {}: {e}", self.program.display());
            match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    DeliveryError::Permanent(text)
                }
                _ => DeliveryError::Transient(text),
            }
        })?;
        // Readers run as tasks so that a full pipe never blocks the program, and are aborted
        // (with whatever they read) when a background child keeps the pipes open.
        let mut child = Running::new(child);
        let stdout = Captured::start(child.stdout());
        let stderr = Captured::start(child.stderr());
        let stdin = child.stdin();
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A program that ignores stdin may exit before reading it: not an error.
                let _ = stdin.write_all(&input).await;
                let _ = stdin.shutdown().await;
            }
        };
        let ((), status) = tokio::join!(feed, child.wait());
        let status = status.map_err(|e| DeliveryError::Transient(format!("wait failed: {e}")))?;
        let out = stdout.finish().await;
        let err = stderr.finish().await;
        if status.success() {
            return Ok(());
        }
        let output = if err.trim().is_empty() { out } else { err };
        let output: String = output.trim().chars().take(ERROR_CHARS).collect();
        let detail = if output.is_empty() {
            String::new()
        } else {
            format!(": {output}")
        };
        match status.code() {
            Some(code) if self.permanent_exit_codes.contains(&code) => Err(
                DeliveryError::Permanent(format!("exit status {code}{detail}")),
            ),
            Some(code) => Err(DeliveryError::Transient(format!(
                "exit status {code}{detail}"
            ))),
            None => {
                #[cfg(unix)]
                let how = {
                    use std::os::unix::process::ExitStatusExt;
                    status
                        .signal()
                        .map(|s| format!("killed by signal {s}"))
                        .unwrap_or_else(|| "ended without an exit status".into())
                };
                #[cfg(not(unix))]
                let how = String::from("ended without an exit status");
                Err(DeliveryError::Transient(format!("{how}{detail}")))
            }
        }
    }
}

impl Deliver for Exec {
    fn base(&self) -> &Base {
        &self.base
    }

    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        // Dropping the future drops the `Running` program, which ends its process group.
        within(self.base.timeout, self.run(n), || {
            format!(
                "{} did not finish within {:?} and was killed",
                self.program.display(),
                self.base.timeout
            )
        })
        .await
    }
}

/// A started program; dropped before it exited (timeout, cancel), it ends its process group.
struct Running {
    /// `None` only once handed over to the ending in `drop`.
    child: Option<Child>,
    exited: bool,
}

impl Running {
    fn new(child: Child) -> Running {
        Running {
            child: Some(child),
            exited: false,
        }
    }

    fn stdin(&mut self) -> Option<ChildStdin> {
        self.child.as_mut().and_then(|c| c.stdin.take())
    }

    fn stdout(&mut self) -> Option<ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }

    fn stderr(&mut self) -> Option<ChildStderr> {
        self.child.as_mut().and_then(|c| c.stderr.take())
    }

    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the program was already ended"))?;
        let status = child.wait().await;
        // Reaped: its id may be reused, so the group is no longer signalled.
        self.exited = status.is_ok();
        status
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(child) = self.child.take() else {
            return;
        };
        if self.exited {
            return;
        }
        #[cfg(unix)]
        if let Some(pgid) = child.id().and_then(|id| i32::try_from(id).ok()) {
            signal_group(pgid, libc::SIGTERM);
            // The leader stays unreaped (held by `child`) until after SIGKILL, so the group id
            // cannot name another process group meanwhile. A thread, because `drop` may run
            // while the runtime shuts down.
            let spawned = std::thread::Builder::new()
                .name("exec-kill".into())
                .spawn(move || {
                    std::thread::sleep(KILL_GRACE);
                    signal_group(pgid, libc::SIGKILL);
                    drop(child);
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot wait to kill the program's process group");
                signal_group(pgid, libc::SIGKILL);
            }
            return;
        }
        // `kill_on_drop` kills the program itself.
        drop(child);
    }
}

/// Sends `signal` to every process in the group `pgid`.
#[cfg(unix)]
fn signal_group(pgid: i32, signal: libc::c_int) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) takes no pointers and touches no memory of this process. The negative id
    // names only the group led by our own unreaped child (never 0 or -1, checked above).
    let _ = unsafe { libc::kill(-pgid, signal) };
}

/// Output of one pipe, read by a task into a buffer capped at [`OUTPUT_CAP`].
struct Captured {
    buffer: Arc<Mutex<Vec<u8>>>,
    task: Option<JoinHandle<()>>,
}

impl Captured {
    fn start<R: AsyncRead + Unpin + Send + 'static>(pipe: Option<R>) -> Captured {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let task = pipe.map(|mut pipe| {
            let buffer = buffer.clone();
            tokio::spawn(async move {
                let mut chunk = [0u8; 1024];
                // Keep draining past the cap so the program never blocks on a full pipe.
                while let Ok(read) = pipe.read(&mut chunk).await {
                    if read == 0 {
                        break;
                    }
                    let mut b = buffer.lock().unwrap_or_else(|e| e.into_inner());
                    let room = OUTPUT_CAP.saturating_sub(b.len());
                    b.extend_from_slice(&chunk[..read.min(room)]);
                }
            })
        });
        Captured { buffer, task }
    }

    /// Waits briefly for the pipe to close, then returns what was read.
    async fn finish(mut self) -> String {
        if let Some(task) = self.task.as_mut() {
            let _ = tokio::time::timeout(PIPE_GRACE, task).await;
        }
        let b = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&b).into_owned()
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The program to run: a path (checked to be an executable file) or a name found in `PATH`.
fn resolve_program(command: &str) -> Result<PathBuf, String> {
    let command = command.trim();
    if command.contains('/') {
        let path = PathBuf::from(command);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(format!("`{command}` is not an executable file"))
        };
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(command))
            .find(|p| is_executable(p))
    });
    found.ok_or_else(|| format!("`{command}` was not found in PATH"))
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// NUL cannot be part of an argument or an environment value; everything else is kept.
fn without_nul(text: &str) -> String {
    text.replace('\0', "")
}
