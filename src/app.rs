//! Assembling and running the service: `serve` and the tests both go through [`Application`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use std::future::IntoFuture;

use axum::ServiceExt;
use axum::extract::Request;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

use crate::cloud_api::{self, AppState, Inner, TokenCheck};
use crate::config::{BackendSettings, ConfigError, Secret, Settings, Tokens};
use crate::directory::{Directory, DirectoryError};
use crate::heartbeat::Heartbeats;
use crate::notify::{Acceptor, Backends, Gate, NotifyError, handoff, worker};
use crate::store::{Store, StoreError};
use crate::tasks::{spawn_directory_refresh, spawn_memory_trim, spawn_purge};
use crate::telemetry::metrics::Metrics;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Neither a token nor `app.allow_any_token` is configured.
    #[error(
        "no API token configured: set `app.auth_token` (or ONCALL_RELAY_APP__AUTH_TOKEN) to the key pasted in OnCall's Cloud settings; \
         `app.allow_any_token: true` accepts any token, as the original did, and is unsafe"
    )]
    NoToken,
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database is unreachable or its migration failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Loading the directory failed.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// A backend is misconfigured.
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// A tracked schedule is misconfigured or cannot be stored.
    #[error(transparent)]
    Schedules(#[from] crate::schedules::ScheduleError),
    /// The acknowledge loop is misconfigured (`grafana.oncall.url`).
    #[error(transparent)]
    Ack(#[from] crate::ack::AckError),
    /// `app.log_level` or `app.log_path` is unusable.
    #[error(transparent)]
    Logging(#[from] crate::telemetry::TelemetryError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Every check `serve` makes before it touches the network or the database: the settings,
/// the token, the log level, the backends (templates compiled) and the configured schedules.
/// `check-config` runs the same, so that it passes exactly when `serve` would get that far.
pub fn preflight(settings: &Settings) -> Result<Backends, StartupError> {
    crate::install_crypto_provider();
    settings.validate()?;
    if settings.app.auth_token.0.is_empty() && !settings.app.allow_any_token {
        return Err(StartupError::NoToken);
    }
    crate::telemetry::filter(&settings.app.log_level)?;
    let hooks = crate::cloud_api::hooks::root(settings);
    let backends = Backends::with_hooks(&settings.plugin, hooks.as_deref())?;
    crate::schedules::configured(settings)?;
    Ok(backends)
}

/// A built service: bound, migrated, workers started, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    store: Store,
    directory: Directory,
    committer: JoinHandle<()>,
    workers: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    stop_workers: CancellationToken,
    shutdown: CancellationToken,
    grace: std::time::Duration,
}

impl Application {
    /// Connects, migrates, loads the directory, starts the queue and binds the listener.
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let backends = Arc::new(preflight(&settings)?);
        let tokens = exposed(&settings.app.auth_token);
        if tokens.is_empty() {
            tracing::warn!(
                "app.allow_any_token is on and no token is configured: ANY caller can place calls and read the directory"
            );
        }

        let store = Store::connect(&settings.db).await?;
        store.migrate().await?;
        let directory = Directory::load(store.clone()).await?;
        // Pages carry one-click action links when the service has a public URL; the key is
        // shared by every replica, so any of them can check a link another made.
        let link_key = match settings.public_url() {
            Some(root) => {
                let key = crate::ack::links::LinkKey::load(&store).await?;
                backends.set_link_maker(key.maker(root));
                Some(key)
            }
            None => None,
        };
        let answers = crate::notify::answer::warnings(&settings);
        for warning in crate::notify::backend::config_warnings(&settings.plugin)
            .into_iter()
            .chain(answers)
        {
            tracing::warn!(warning = %warning, "unsafe backend configuration");
        }

        let wake = Arc::new(Notify::new());
        let metrics = Arc::new(Metrics::default());
        // A process that delivers takes the rows it accepts straight to its deliveries.
        let (handoff, inbox) = if settings.queue.deliver {
            let (handoff, inbox) =
                handoff::channel(settings.queue.concurrency, settings.queue.lease);
            (Some(handoff), Some(inbox))
        } else {
            (None, None)
        };
        let (acceptor, committer) = Acceptor::spawn(
            store.clone(),
            &settings.queue,
            wake.clone(),
            handoff,
            metrics.clone(),
        );
        let stop_workers = CancellationToken::new();
        let workers = inbox.map(|inbox| {
            worker::spawn(
                store.clone(),
                directory.clone(),
                backends.clone(),
                settings.queue.clone(),
                wake.clone(),
                inbox,
                stop_workers.clone(),
                metrics.clone(),
            )
        });
        let shutdown = CancellationToken::new();
        let mut background = vec![spawn_directory_refresh(
            directory.clone(),
            settings.directory.refresh_interval,
            shutdown.clone(),
        )];
        background.push(spawn_memory_trim(shutdown.clone()));
        background.push(cloud_api::spawn_metrics_refresh(
            store.clone(),
            metrics.clone(),
            settings.app.metrics_interval,
            shutdown.clone(),
        ));
        if !settings.queue.retention.is_zero() {
            background.push(spawn_purge(
                store.clone(),
                settings.queue.retention,
                shutdown.clone(),
            ));
        }

        let addr = settings.app.port.socket_addr()?;
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: addr.clone(),
                source,
            })?;

        let heartbeats = Heartbeats::new(
            store.clone(),
            directory.clone(),
            settings.heartbeat.clone(),
            wake.clone(),
        );
        background.push(heartbeats.clone().spawn_watchdog(shutdown.clone()));
        let schedules = crate::schedules::Schedules::new(
            store.clone(),
            directory.clone(),
            Arc::new(settings.clone()),
            wake.clone(),
        )?;
        // Config entries are stored before serving, so a wrong one stops the start.
        schedules.sync_config().await?;
        background.push(schedules.clone().spawn_poller(shutdown.clone()));
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let push_route = non_empty(&settings.push.backend);
        let push_fallback_route = non_empty(&settings.push.fallback_backend).or(push_route.clone());

        let api = oncall_api(&settings)?;
        let has_api = api.is_some();
        let mut ack = crate::ack::Ack::new(store.clone(), directory.clone(), api)
            .with_schedules(schedules.clone())
            .with_editors(crate::ack::edits::editors(&settings.plugin.backends));
        if let (Some(root), Some(key)) = (settings.public_url(), link_key) {
            ack = ack.with_links(key, root);
        }
        if settings.grafana.oncall.incident_details {
            if has_api {
                let finder = ack.clone();
                backends.set_incident_lookup(crate::notify::backends::IncidentLookup(Arc::new(
                    move |n| {
                        let finder = finder.clone();
                        Box::pin(async move { finder.incident_for(&n).await })
                    },
                )));
            } else {
                tracing::warn!(
                    "grafana.oncall.incident_details needs grafana.oncall.url and header_token: no details are read"
                );
            }
        }
        for (name, backend) in &settings.plugin.backends {
            if let crate::config::BackendSettings::Twilio(t) = backend
                && t.replies
                && (!has_api || settings.public_url().is_none())
            {
                return Err(crate::ack::AckError::Config(format!(
                    "plugin.backends.{name}.replies needs app.hostname (Twilio posts replies there), grafana.oncall.url and grafana.oncall.header_token"
                ))
                .into());
            }
            if let crate::config::BackendSettings::Sip(sip) = backend {
                if sip.replies && (!has_api || sip.app.is_none()) {
                    return Err(crate::ack::AckError::Config(format!(
                        "plugin.backends.{name}.replies needs `app` (the Stasis application keys come back through), grafana.oncall.url and grafana.oncall.header_token"
                    ))
                    .into());
                }
                if let Some(asterisk) = crate::ack::asterisk::Asterisk::new(name, sip)? {
                    background.push(asterisk.spawn_listener(
                        ack.clone(),
                        store.clone(),
                        wake.clone(),
                        shutdown.clone(),
                    ));
                }
                continue;
            }
            let crate::config::BackendSettings::Telegram(t) = backend else {
                continue;
            };
            if !t.replies {
                continue;
            }
            if !has_api {
                return Err(crate::ack::AckError::Config(format!(
                    "plugin.backends.{name}.replies needs grafana.oncall.url and grafana.oncall.header_token"
                ))
                .into());
            }
            let bot = crate::ack::telegram::Bot::new(name, &t.api_base, t.token.expose())?;
            background.push(bot.spawn_poller(ack.clone(), store.clone(), shutdown.clone()));
        }
        let state = AppState::new(Inner {
            tokens: TokenCheck::new(tokens, settings.app.allow_any_token),
            debug: settings.debug,
            admin_tokens: optional_check(&settings.app.admin_token),
            metrics_tokens: optional_check(&settings.app.metrics_token),
            public_url: settings.public_url(),
            directory: directory.clone(),
            acceptor,
            store: store.clone(),
            heartbeats,
            schedules,
            gate: Gate::new(
                store.clone(),
                settings.limits.clone(),
                settings.dedup.clone(),
            ),
            push_route,
            push_fallback_route,
            request_timeout: settings.app.write_timeout,
            metrics,
            hooks: crate::cloud_api::hooks::Hooks::from_settings(&settings, wake.clone()),
            ready_at: Default::default(),
            ack,
            oncall_webhook_tokens: non_empty(settings.grafana.oncall.webhook_token.expose())
                .map(|token| TokenCheck::new(vec![token], false)),
            sms_replies: settings
                .plugin
                .backends
                .iter()
                .filter_map(|(name, b)| match b {
                    crate::config::BackendSettings::Webhook(w) => {
                        w.replies.clone().map(|r| (name.clone(), r))
                    }
                    _ => None,
                })
                .collect(),
            console: crate::console::ConsoleConfig::new(&settings),
            slack_secrets: backend_secrets(&settings, |b| match b {
                BackendSettings::Slack(slack) => slack.signing_secret.as_ref(),
                _ => None,
            }),
            mattermost_commands: backend_secrets(&settings, |b| match b {
                BackendSettings::Mattermost(m) => m.command_token.as_ref(),
                _ => None,
            }),
        });
        let router = cloud_api::router(state, &settings.app.path_prefix, settings.app.body_limit);
        Ok(Application {
            listener,
            router,
            store,
            directory,
            committer,
            workers,
            background,
            stop_workers,
            shutdown,
            grace: settings.app.shutdown_grace,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, StartupError> {
        self.listener.local_addr().map_err(StartupError::Serve)
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The user directory this service answers from.
    pub fn directory(&self) -> Directory {
        self.directory.clone()
    }

    /// The database this service uses.
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains: requests in flight finish,
    /// their notifications are committed, deliveries in flight are recorded.
    pub async fn run(self) -> Result<(), StartupError> {
        let Application {
            listener,
            router,
            store,
            committer,
            workers,
            background,
            stop_workers,
            shutdown,
            grace,
            ..
        } = self;
        // Trimming happens before routing, so `/info/` and `/info` reach the same handler
        // with no redirect (a redirected POST loses its body and its token).
        let app = NormalizePathLayer::trim_trailing_slash().layer(router);
        let signal = shutdown.clone();
        // The peer address lets the console trust a reverse proxy's sign-in header.
        let server = axum::serve(
            listener,
            ServiceExt::<Request>::into_make_service_with_connect_info::<SocketAddr>(app),
        )
        .with_graceful_shutdown(async move { signal.cancelled().await })
        .into_future();
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        let served = tokio::select! {
            served = server => served,
            _ = deadline => {
                tracing::warn!("requests still running after the grace period; stopping anyway");
                Ok(())
            }
        };
        shutdown.cancel();
        let drain = async {
            // The router (and with it every Acceptor) is gone: the committer drains and stops.
            let _ = committer.await;
            stop_workers.cancel();
            if let Some(w) = workers {
                let _ = w.await;
            }
            for task in background {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!(
                "deliveries still running after the grace period; their leases will hand them over"
            );
        }
        store.close().await;
        served.map_err(StartupError::Serve)
    }
}

/// OnCall's public API, when `grafana.oncall.url` and its token are set.
fn oncall_api(settings: &Settings) -> Result<Option<crate::ack::api::OncallApi>, StartupError> {
    let oncall = &settings.grafana.oncall;
    if oncall.url.trim().is_empty() || oncall.header_token.expose().trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(crate::ack::api::OncallApi::new(
        &oncall.url,
        oncall.header_token.expose(),
    )?))
}

/// The tokens of an `app.*_token` option as the checks compare them.
fn exposed(tokens: &Tokens) -> Vec<String> {
    tokens.0.iter().map(|s| s.expose().to_string()).collect()
}

/// The check of a token option that turns its routes off when unset (no "any token" mode).
fn optional_check(tokens: &Tokens) -> Option<TokenCheck> {
    (!tokens.0.is_empty()).then(|| TokenCheck::new(exposed(tokens), false))
}

/// The secret `pick` finds in each backend's settings, by backend name; empty ones are left out.
fn backend_secrets(
    settings: &Settings,
    pick: fn(&BackendSettings) -> Option<&Secret>,
) -> BTreeMap<String, Secret> {
    settings
        .plugin
        .backends
        .iter()
        .filter_map(|(name, b)| pick(b).map(|s| (name, s)))
        .filter(|(_, s)| !s.expose().is_empty())
        .map(|(name, s)| (name.clone(), s.clone()))
        .collect()
}
