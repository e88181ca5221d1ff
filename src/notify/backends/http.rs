//! What the HTTP backends share: the client, base URLs from the settings, how a failed
//! request and an HTTP status become a delivery outcome, and error text that never carries
//! the URL (it may hold a secret).

use std::time::Duration;

use reqwest::{StatusCode, Url};

use super::DeliveryError;
use crate::notify::NotifyError;

/// The HTTP client shared by HTTP backends: rustls, no redirects (a redirected POST loses
/// its body), per-request timeouts set by each backend.
pub(super) fn client() -> Result<reqwest::Client, NotifyError> {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("oncall-relay/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| NotifyError::BackendConfig {
            name: "http".into(),
            message: format!("cannot build the HTTP client: {e}"),
        })
}

/// The setting `field` as an http(s) URL, trimmed and without its trailing slash.
pub(super) fn base_url(raw: &str, field: &str) -> Result<Url, String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let parsed = Url::parse(trimmed).map_err(|e| format!("`{field}`: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{field}` must be an http or https URL"));
    }
    Ok(parsed)
}

/// A request that got no answer (connection refused, timeout, TLS): worth retrying.
pub(super) fn request_failed(e: reqwest::Error) -> DeliveryError {
    DeliveryError::Transient(format!("request failed: {}", error_chain(&e.without_url())))
}

/// Sends `request` and judges the answer with [`check`].
pub(super) async fn send(
    request: reqwest::RequestBuilder,
    service: &str,
) -> Result<(), DeliveryError> {
    let response = request.send().await.map_err(request_failed)?;
    check(response, service).await
}

/// 2xx is delivered; 408, 429 and 5xx say "later"; any other status says "never". The error
/// keeps the start of the body, where APIs explain themselves.
pub(super) async fn check(response: reqwest::Response, service: &str) -> Result<(), DeliveryError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let detail = excerpt(&body);
    let message = if service.is_empty() {
        format!("HTTP {status}: {}", detail.trim())
    } else {
        format!("{service} HTTP {status}: {}", detail.trim())
    };
    Err(failed(status, message))
}

/// The outcome of a non-2xx `status`: transient for 408, 429 and 5xx, else permanent.
pub(super) fn failed(status: StatusCode, message: String) -> DeliveryError {
    if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
        DeliveryError::Transient(message)
    } else {
        DeliveryError::Permanent(message)
    }
}

/// The start of a body that goes into an error text.
pub(super) fn excerpt(body: &str) -> String {
    body.chars().take(300).collect()
}

/// An error with its sources, `a: b: c`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
