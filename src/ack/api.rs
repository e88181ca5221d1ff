//! OnCall's public API, the part the acknowledge loop uses: act on an alert group, leave a
//! resolution note, read an alert group, and who is on call in OnCall's schedules.
//!
//! The token goes out as the raw `Authorization` value, as OnCall expects; it is never logged
//! and never part of an error text, and neither is the URL.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::json;

use super::AckError;
use super::command::Action;
use crate::notify::backends::http::{error_chain, retry_after};

/// How long one call to OnCall may take: a person waits for the answer to their reply.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What OnCall answered to an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: done.
    Done,
    /// 400 with OnCall's reason ("Can't acknowledge an acknowledged alert group").
    Refused(String),
    /// 404: no alert group with this id (or not visible to the token's owner).
    NotFound,
    /// 429: try again after this many seconds.
    Throttled(Duration),
    /// 401/403: the token is wrong, inactive or a service account's.
    Forbidden,
    /// No usable answer (network, 5xx, timeout).
    Failed(String),
}

impl Answer {
    /// A short word for the events log.
    pub fn outcome(&self) -> &'static str {
        match self {
            Answer::Done => "done",
            Answer::Refused(_) => "refused",
            Answer::NotFound => "not-found",
            Answer::Throttled(_) => "throttled",
            Answer::Forbidden => "forbidden",
            Answer::Failed(_) => "failed",
        }
    }
}

/// An alert group as OnCall's public API describes it (the fields used here).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AlertGroup {
    /// Public key, `I` + 12 characters.
    pub id: String,
    /// Web title.
    #[serde(default)]
    pub title: Option<String>,
    /// `new`, `acknowledged`, `resolved` or `silenced`.
    #[serde(default)]
    pub state: String,
    /// Links; `web` is the one people open.
    #[serde(default)]
    pub permalinks: Permalinks,
    /// Labels, as `{"key": {"name": …}, "value": {"name": …}}`.
    #[serde(default)]
    pub labels: Vec<serde_json::Value>,
}

impl AlertGroup {
    /// What templates see as `alert_group`: `id`, `title`, `state`, `labels` (name → value)
    /// and `permalink`.
    pub fn template_value(&self) -> serde_json::Value {
        let labels: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .filter_map(|l| {
                let name = l["key"]["name"].as_str()?;
                let value = l["value"]["name"].as_str().unwrap_or("");
                Some((name.to_string(), json!(value)))
            })
            .collect();
        json!({
            "id": self.id,
            "title": self.title,
            "state": self.state,
            "labels": labels,
            "permalink": self.permalinks.web,
        })
    }
}

/// `permalinks` of an alert group.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Permalinks {
    /// Link to the alert group in OnCall's web UI.
    #[serde(default)]
    pub web: Option<String>,
}

/// A client of one OnCall engine's public API.
#[derive(Debug, Clone)]
pub struct OncallApi {
    base: Url,
    token: String,
    http: reqwest::Client,
}

impl OncallApi {
    /// A client for the engine at `base_url` (`grafana.oncall.url`) acting with `token`.
    pub fn new(base_url: &str, token: &str) -> Result<OncallApi, AckError> {
        let trimmed = base_url.trim().trim_end_matches('/');
        let base = Url::parse(&format!("{trimmed}/"))
            .map_err(|e| AckError::Config(format!("grafana.oncall.url: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(AckError::Config(
                "grafana.oncall.url must be an http or https URL".into(),
            ));
        }
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("oncall-relay/", env!("CARGO_PKG_VERSION")))
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| AckError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(OncallApi {
            base,
            token: token.to_string(),
            http,
        })
    }

    fn url(&self, path: &str) -> Result<Url, AckError> {
        self.base
            .join(path)
            .map_err(|e| AckError::Config(format!("grafana.oncall.url: {e}")))
    }

    /// Runs `action` on the alert group `id`, as the owner of `token` (the configured token
    /// when `None`).
    pub async fn act(&self, id: &str, action: Action, token: Option<&str>) -> Answer {
        if !is_alert_group_id(id) {
            return Answer::NotFound;
        }
        let url = match self.url(&format!("api/v1/alert_groups/{id}/{}", action.api_name())) {
            Ok(url) => url,
            Err(e) => return Answer::Failed(e.to_string()),
        };
        let mut request = self
            .http
            .post(url)
            .header("Authorization", token.unwrap_or(&self.token));
        if let Action::Silence(minutes) = action {
            request = request.json(&json!({ "delay": u64::from(minutes) * 60 }));
        }
        match request.send().await {
            Ok(response) => answer(response).await,
            Err(e) => Answer::Failed(format!(
                "OnCall did not answer: {}",
                error_chain(&e.without_url())
            )),
        }
    }

    /// Records who really acted, as a resolution note on the alert group.
    pub async fn note(&self, id: &str, text: &str) -> Answer {
        let url = match self.url("api/v1/resolution_notes/") {
            Ok(url) => url,
            Err(e) => return Answer::Failed(e.to_string()),
        };
        let request = self
            .http
            .post(url)
            .header("Authorization", &self.token)
            .json(&json!({ "alert_group_id": id, "text": text }));
        match request.send().await {
            // 201 Created is OnCall's answer to a new note.
            Ok(response) if response.status().is_success() => Answer::Done,
            Ok(response) => answer(response).await,
            Err(e) => Answer::Failed(format!(
                "OnCall did not answer: {}",
                error_chain(&e.without_url())
            )),
        }
    }

    /// The alert group `id`, or `None` when OnCall does not know it.
    pub async fn alert_group(&self, id: &str) -> Result<Option<AlertGroup>, AckError> {
        if !is_alert_group_id(id) {
            return Ok(None);
        }
        self.get(&format!("api/v1/alert_groups/{id}")).await
    }

    /// OnCall's schedules with who is on call in each now (`on_call_now`), page after page.
    pub async fn schedules(&self) -> Result<Vec<OncallSchedule>, AckError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            // Page numbers, not the `next` URL OnCall gives: the token goes to this origin only.
            let Some(found) = self
                .get::<SchedulesPage>(&format!("api/v1/schedules/?page={page}"))
                .await?
            else {
                break;
            };
            all.extend(found.results);
            if found.next.is_none() {
                break;
            }
        }
        Ok(all)
    }

    /// The OnCall user with public id `id`, or `None` when OnCall does not know it.
    pub async fn user(&self, id: &str) -> Result<Option<OncallUser>, AckError> {
        let plausible =
            !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !plausible {
            return Ok(None);
        }
        self.get(&format!("api/v1/users/{id}/")).await
    }

    /// `GET path`, read as `T`; `None` for a 404.
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>, AckError> {
        let response = self
            .http
            .get(self.url(path)?)
            .header("Authorization", &self.token)
            .send()
            .await
            .map_err(|e| AckError::Oncall(error_chain(&e.without_url())))?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => response
                .json::<T>()
                .await
                .map(Some)
                .map_err(|e| AckError::Oncall(format!("unreadable answer: {e}"))),
            s => Err(AckError::Oncall(format!("OnCall answered {s}"))),
        }
    }
}

/// Most pages of schedules read at once (OnCall pages by 50).
const MAX_PAGES: u32 = 20;

/// One of OnCall's schedules, as `GET /api/v1/schedules/` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct OncallSchedule {
    /// Its public id.
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Public ids of the users on call now.
    #[serde(default)]
    pub on_call_now: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct SchedulesPage {
    #[serde(default)]
    results: Vec<OncallSchedule>,
    #[serde(default)]
    next: Option<String>,
}

/// A user of OnCall's, as `GET /api/v1/users/<id>/` shows them.
#[derive(Debug, Clone, Deserialize)]
pub struct OncallUser {
    /// Email.
    #[serde(default)]
    pub email: String,
    /// Grafana username.
    #[serde(default)]
    pub username: String,
}

/// Whether `id` has the shape of an alert group's public key (`I` + 12 of `A-NP-Z1-9`), so that
/// nothing else is ever put into a URL path.
pub fn is_alert_group_id(id: &str) -> bool {
    id.len() == 13
        && id.starts_with('I')
        && id
            .bytes()
            .skip(1)
            .all(|b| (b.is_ascii_uppercase() && b != b'O') || (b'1'..=b'9').contains(&b))
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    if status.is_success() {
        return Answer::Done;
    }
    let reset = response
        .headers()
        .get("ratelimit-reset")
        .or_else(|| response.headers().get("retry-after"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(Some(v)));
    let detail = response
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_string));
    match status {
        StatusCode::BAD_REQUEST => {
            Answer::Refused(detail.unwrap_or_else(|| "OnCall refused the action".into()))
        }
        StatusCode::NOT_FOUND => Answer::NotFound,
        StatusCode::TOO_MANY_REQUESTS => {
            Answer::Throttled(reset.unwrap_or(Duration::from_secs(60)))
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Answer::Forbidden,
        s => Answer::Failed(format!("OnCall answered {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_keys_are_alert_group_ids() {
        assert!(is_alert_group_id("IABCDEFGH1234"));
        for bad in [
            "",
            "I",
            "iABCDEFGH1234",
            "IABCDEFGH12340",
            "IABCDEFG/1234",
            "IABCDEFGH1230",
            "IABCDEFGHO234",
        ] {
            assert!(!is_alert_group_id(bad), "{bad}");
        }
    }
}
