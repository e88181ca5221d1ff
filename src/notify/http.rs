//! What the HTTP backends share: how a failed request and an HTTP status become a delivery
//! outcome, and error text that never carries the URL (it may hold a secret).

use super::backend::DeliveryError;

/// A request that got no answer (connection refused, timeout, TLS): worth retrying.
pub(super) fn request_failed(e: reqwest::Error) -> DeliveryError {
    DeliveryError::Transient(format!("request failed: {}", error_chain(&e.without_url())))
}

/// 2xx is delivered; 408, 429 and 5xx say "later"; any other status says "never". The error
/// keeps the start of the body, where APIs explain themselves.
pub(super) async fn check(response: reqwest::Response, service: &str) -> Result<(), DeliveryError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let detail = response
        .text()
        .await
        .map(|t| t.chars().take(300).collect::<String>())
        .unwrap_or_default();
    let message = if service.is_empty() {
        format!("HTTP {status}: {detail}")
    } else {
        format!("{service} HTTP {status}: {detail}")
    };
    if is_transient(status) {
        Err(DeliveryError::Transient(message))
    } else {
        Err(DeliveryError::Permanent(message))
    }
}

/// Whether a non-2xx status is worth retrying.
pub(super) fn is_transient(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429
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
