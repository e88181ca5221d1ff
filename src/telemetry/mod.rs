//! Logging (JSON lines on stdout, or appended to `app.log_path`) and metrics.

pub mod metrics;
pub mod redact;

pub use redact::redact_url;

use std::path::Path;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Errors setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log level is not one we know.
    #[error("option `app.log_level`: `{0}` is not one of trace, debug, info, warn, error")]
    Level(String),
    /// The log file cannot be opened.
    #[error("option `app.log_path`: cannot open {path}: {source}")]
    File {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A subscriber was already installed.
    #[error("logging was already initialised")]
    AlreadySet,
}

/// The filter for `level`: our own crate and the HTTP layer at that level, dependencies at warn.
/// `RUST_LOG`, when set, wins.
pub fn filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    if let Ok(directives) = std::env::var("RUST_LOG")
        && !directives.trim().is_empty()
    {
        return Ok(EnvFilter::new(directives));
    }
    let level = match level.trim().to_ascii_lowercase().as_str() {
        l @ ("trace" | "debug" | "info" | "warn" | "error") => l.to_string(),
        "warning" => "warn".into(),
        "fatal" | "panic" => "error".into(),
        "disabled" | "off" => "off".into(),
        other => return Err(TelemetryError::Level(other.to_string())),
    };
    Ok(EnvFilter::new(format!(
        "warn,oncall_relay={level},tower_http={level}"
    )))
}

/// Installs the global subscriber; keep the guard alive so buffered lines are flushed.
pub fn init(level: &str, log_path: &str) -> Result<WorkerGuard, TelemetryError> {
    let filter = filter(level)?;
    // The default buffer holds 128,000 lines and is allocated up front (~4 MiB); a few
    // thousand absorb any burst a relay logs.
    let builder = || NonBlockingBuilder::default().buffered_lines_limit(4096);
    let (writer, guard) = if log_path.trim().is_empty() {
        builder().finish(std::io::stdout())
    } else {
        let path = Path::new(log_path.trim());
        let file = open_log_file(path).map_err(|source| TelemetryError::File {
            path: log_path.to_string(),
            source,
        })?;
        builder().finish(file)
    };
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init()
        .map_err(|_| TelemetryError::AlreadySet)?;
    Ok(guard)
}

/// Opens the log file for appending; a new one is readable by its owner only, since debug
/// lines carry personal data.
fn open_log_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut open = std::fs::OpenOptions::new();
    open.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    open.open(path)
}

/// Plain warnings on stderr for CLI commands.
pub fn init_cli() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter("warn").unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Caps glibc's malloc arenas at two, before any thread starts.
///
/// By default every thread that allocates may get an arena of its own (up to eight per
/// core: runtime workers, blocking threads, one thread per SQLite connection), and each
/// keeps the pages it once used: on an idle relay that is most of its resident memory.
/// Two arenas keep allocation contention low on the few cores a relay gets.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands memory freed by the allocator back to the system.
///
/// glibc keeps freed blocks for reuse, so after a burst of requests
/// the process would stay at its peak size; trimming brings it back to what is in use.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only returns unused heap pages to the kernel; it takes no
        // pointers and is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_checked() {
        if std::env::var("RUST_LOG").is_ok() {
            return;
        }
        assert!(filter("info").is_ok());
        assert!(filter("WARNING").is_ok());
        assert!(matches!(filter("loud"), Err(TelemetryError::Level(_))));
    }

    #[cfg(unix)]
    #[test]
    fn a_new_log_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("app.log");
        drop(open_log_file(&path).expect("open"));
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }
}
