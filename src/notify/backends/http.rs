//! What the HTTP backends share: the client, base URLs from the settings, how a failed
//! request and an HTTP status become a delivery outcome, and error text that never carries
//! the URL (it may hold a secret).

use std::time::Duration;

use reqwest::{StatusCode, Url};

use super::DeliveryError;
use crate::notify::{Notification, NotifyError};

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

/// The longest wait a provider may ask for: a hostile or broken `Retry-After` must not park
/// a page for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A provider's "retry after N seconds" (a `Retry-After` header or Telegram's
/// `retry_after`), capped at [`MAX_RETRY_AFTER`]. Missing, negative or garbled values (and the
/// rarely used HTTP-date form) give `None`, so the queue's own backoff applies.
pub fn retry_after(value: Option<&str>) -> Option<Duration> {
    let digits = value?.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Too many digits for a u64 is still "a very long time".
    Some(capped(digits.parse::<u64>().unwrap_or(u64::MAX)))
}

/// `seconds` as a wait, at most [`MAX_RETRY_AFTER`].
pub fn capped(seconds: u64) -> Duration {
    Duration::from_secs(seconds).min(MAX_RETRY_AFTER)
}

/// The `Retry-After` header of `response`, in seconds, when its status asks to wait (429, 503).
pub(super) fn retry_after_header(response: &reqwest::Response) -> Option<Duration> {
    let status = response.status().as_u16();
    if status != 429 && status != 503 {
        return None;
    }
    retry_after(
        response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
    )
}

/// The header that carries a delivery's [`super::idempotency_key`].
pub(super) const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// `request` with `n`'s idempotency key, so that a receiver can drop a repeat.
pub(super) fn keyed(request: reqwest::RequestBuilder, n: &Notification) -> reqwest::RequestBuilder {
    request.header(IDEMPOTENCY_KEY, super::idempotency_key(n))
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
    let after = retry_after_header(&response);
    let body = response.text().await.unwrap_or_default();
    let detail = excerpt(&body);
    let message = if service.is_empty() {
        format!("HTTP {status}: {}", detail.trim())
    } else {
        format!("{service} HTTP {status}: {}", detail.trim())
    };
    Err(failed_after(status, message, after))
}

/// The outcome of a non-2xx `status`: transient for 408, 429 and 5xx, else permanent.
pub(super) fn failed(status: StatusCode, message: String) -> DeliveryError {
    if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
        DeliveryError::Transient(message)
    } else {
        DeliveryError::Permanent(message)
    }
}

/// Like [`failed`], but a transient outcome keeps the provider's requested wait.
pub(super) fn failed_after(
    status: StatusCode,
    message: String,
    after: Option<Duration>,
) -> DeliveryError {
    match (failed(status, message), after) {
        (DeliveryError::Transient(message), Some(after)) => {
            DeliveryError::Throttled { message, after }
        }
        (outcome, _) => outcome,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_caps_them() {
        assert_eq!(retry_after(Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(Some(" 0 ")), Some(Duration::ZERO));
        assert_eq!(retry_after(None), None);
        assert_eq!(retry_after(Some("")), None);
        assert_eq!(retry_after(Some("soon")), None);
        assert_eq!(retry_after(Some("-5")), None);
        assert_eq!(retry_after(Some("1.5")), None);
        assert_eq!(retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(Some("86400")), Some(MAX_RETRY_AFTER));
        assert_eq!(
            retry_after(Some("99999999999999999999999")),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn only_transient_failures_keep_the_wait() {
        let after = Some(Duration::from_secs(2));
        assert_eq!(
            failed_after(StatusCode::TOO_MANY_REQUESTS, "x".into(), after),
            DeliveryError::Throttled {
                message: "x".into(),
                after: Duration::from_secs(2)
            }
        );
        assert_eq!(
            failed_after(StatusCode::TOO_MANY_REQUESTS, "x".into(), None),
            DeliveryError::Transient("x".into())
        );
        assert_eq!(
            failed_after(StatusCode::FORBIDDEN, "x".into(), after),
            DeliveryError::Permanent("x".into())
        );
    }
}
