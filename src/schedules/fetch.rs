//! Fetching a schedule's iCal export: conditional requests, size cap, and URLs with their
//! tokens kept out of errors and logs.

use std::sync::Arc;
use std::time::Duration;

use super::{Schedule, ScheduleError, Schedules, ical};
use crate::telemetry::redact_url;

/// Largest iCal export accepted.
pub(super) const MAX_BODY: usize = 8 * 1024 * 1024;
/// Timeout of one iCal fetch or callback POST.
pub(super) const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// A failed fetch, without the calendar's path and query (its token) in the text, which is
/// logged and shown in the status.
fn fetch_failed(url: &str, e: reqwest::Error) -> ScheduleError {
    ScheduleError::Fetch(format!(
        "{}: {}",
        redact_url(url),
        crate::notify::http::error_chain(&e.without_url())
    ))
}

/// Whether `url` has the scheme, host and port of `base` (default ports made explicit).
pub(super) fn same_origin(url: &str, base: &str) -> bool {
    match (
        reqwest::Url::parse(url.trim()),
        reqwest::Url::parse(base.trim()),
    ) {
        (Ok(a), Ok(b)) => {
            matches!(a.scheme(), "http" | "https")
                && a.scheme() == b.scheme()
                && a.host() == b.host()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

/// What a 304 answer reuses: the last body's validators and the parsed calendar.
#[derive(Clone)]
pub(super) struct Cached {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    calendar: Arc<ical::Calendar>,
}

impl Schedules {
    /// The calendar the last successful fetch of schedule `id` parsed.
    pub(super) async fn cached_calendar(&self, id: i64) -> Option<Arc<ical::Calendar>> {
        self.cache.lock().await.get(&id).map(|c| c.calendar.clone())
    }

    fn full_url(&self, ical_url: &str) -> String {
        if ical_url.starts_with("http://") || ical_url.starts_with("https://") {
            return ical_url.to_string();
        }
        let base = self.settings.grafana.oncall.url.trim_end_matches('/');
        format!("{base}/{}", ical_url.trim_start_matches('/'))
    }

    /// Fetches the calendar, reusing the cached one on 304.
    pub(super) async fn fetch(
        &self,
        schedule: &Schedule,
    ) -> Result<Arc<ical::Calendar>, ScheduleError> {
        let url = self.full_url(&schedule.ical_url);
        let cached = self
            .cache
            .lock()
            .await
            .get(&schedule.id)
            .cloned()
            .filter(|c| c.url == url);
        let mut request = self.client.get(&url);
        let headers = self
            .settings
            .grafana
            .oncall
            .schedules
            .get(&schedule.key)
            .map(|s| s.headers.clone())
            .unwrap_or_default();
        let token = self.settings.grafana.oncall.header_token.expose();
        // The token is OnCall's: a calendar elsewhere (an admin may add any URL) never sees it.
        if !token.is_empty()
            && same_origin(&url, &self.settings.grafana.oncall.url)
            && !headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("authorization"))
        {
            request = request.header("Authorization", token);
        }
        for (k, v) in &headers {
            request = request.header(k.as_str(), v.as_str());
        }
        if let Some(c) = &cached {
            if let Some(etag) = &c.etag {
                request = request.header("If-None-Match", etag.as_str());
            }
            if let Some(lm) = &c.last_modified {
                request = request.header("If-Modified-Since", lm.as_str());
            }
        }
        let mut response = request.send().await.map_err(|e| fetch_failed(&url, e))?;
        if response.status() == reqwest::StatusCode::NOT_MODIFIED
            && let Some(c) = cached
        {
            return Ok(c.calendar);
        }
        if !response.status().is_success() {
            return Err(ScheduleError::Fetch(format!("HTTP {}", response.status())));
        }
        if response
            .content_length()
            .is_some_and(|n| n as usize > MAX_BODY)
        {
            return Err(ScheduleError::Fetch(format!(
                "calendar larger than {MAX_BODY} bytes"
            )));
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header("etag");
        let last_modified = header("last-modified");
        // Read in chunks so a lying or absent Content-Length cannot exceed the cap.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fetch_failed(&url, e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ScheduleError::Fetch(format!(
                    "calendar larger than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body)
            .map_err(|_| ScheduleError::Calendar("calendar is not UTF-8".into()))?;
        let calendar = Arc::new(ical::parse(&text)?);
        for w in &calendar.warnings {
            tracing::warn!(schedule = %schedule.key, warning = %w, "schedule calendar");
        }
        self.cache.lock().await.insert(
            schedule.id,
            Cached {
                url,
                etag,
                last_modified,
                calendar: calendar.clone(),
            },
        );
        Ok(calendar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let base = "https://oncall.example.com/oncall/";
        assert!(same_origin(
            "https://oncall.example.com/api/ical?token=x",
            base
        ));
        assert!(same_origin("https://ONCALL.example.com:443/x", base));
        assert!(!same_origin("http://oncall.example.com/x", base));
        assert!(!same_origin("https://oncall.example.com:8443/x", base));
        assert!(!same_origin("https://oncall.example.com.evil.test/x", base));
        assert!(!same_origin(
            "https://evil.test/?https://oncall.example.com",
            base
        ));
        assert!(!same_origin("https://oncall.example.com/x", ""));
    }
}
