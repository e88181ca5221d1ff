//! Logging: JSON lines on stdout, or appended to `app.log_path`.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
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
    let (writer, guard) = if log_path.trim().is_empty() {
        tracing_appender::non_blocking(std::io::stdout())
    } else {
        let path = Path::new(log_path.trim());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| TelemetryError::File {
                path: log_path.to_string(),
                source,
            })?;
        tracing_appender::non_blocking(file)
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

/// Plain warnings on stderr for CLI commands.
pub fn init_cli() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter("warn").unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
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
}
