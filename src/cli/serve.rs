//! `serve`: runs the service until SIGTERM or Ctrl-C.

use oncall_relay::config::Settings;
use oncall_relay::{Application, telemetry};

use super::warn_ignored;

/// Sets up logging from the settings, starts the service and waits for a signal to stop.
pub async fn run(settings: Settings, ignored: &[String]) -> anyhow::Result<()> {
    let _guard = telemetry::init(&settings.app.log_level, &settings.app.log_path)?;
    // A handler's panic is answered with a JSON 500 and serving goes on; the default hook
    // would still print the panic's message, which can quote request data, to stderr.
    std::panic::set_hook(Box::new(log_panic));
    warn_ignored(ignored);
    let started = std::time::Instant::now();
    let app = Application::build(settings.clone()).await?;
    let addr = app.local_addr()?;
    tracing::info!(
        address = %addr,
        version = %settings.app.version,
        driver = oncall_relay::store::driver_name(app.store().driver()),
        startup_ms = started.elapsed().as_millis() as u64,
        "oncall-relay listening"
    );
    let token = app.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
    app.run().await?;
    Ok(())
}

/// The panic hook of `serve`: where it happened, never what the message says.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let location = info.location().map_or_else(
        || "unknown".to_string(),
        |l| format!("{}:{}:{}", l.file(), l.line(), l.column()),
    );
    tracing::error!(
        %location,
        thread = std::thread::current().name().unwrap_or("unnamed"),
        "panicked (message not logged: it may quote request data)"
    );
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    #[test]
    fn a_panic_is_logged_with_its_location_and_without_its_message() {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(Arc::new(log.reopen().expect("log file")))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(super::log_panic));
            let outcome = std::panic::catch_unwind(|| panic!("secret {}", "+4930123456"));
            std::panic::set_hook(previous);
            assert!(outcome.is_err());
        });
        let text = std::fs::read_to_string(log.path()).expect("log");
        assert!(text.contains("ERROR"), "{text}");
        assert!(text.contains(file!()), "{text}");
        assert!(!text.contains("+4930123456"), "{text}");
        assert!(!text.contains("secret"), "{text}");
    }
}
