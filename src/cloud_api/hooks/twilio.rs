//! Twilio's webhooks: the signature check every Twilio hook shares, the call status
//! callback (`POST hooks/twilio/<backend>/status`), SMS replies (`.../sms`) and a call's key
//! presses (`.../voice`).
//!
//! Twilio signs each request: base64 of HMAC-SHA1, keyed by the account's auth token, over
//! the full URL it called followed by every form parameter's name and value, sorted by name.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::Hooks;
use crate::cloud_api::{ApiError, AppState};
use crate::config::Secret;
use crate::notify::{NotifyError, answer};
use crate::store::now_ms;

/// The header Twilio puts its signature in.
const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// Twilio's signature of a request to `url` with form `params`.
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = match Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The form of a request to the hook `endpoint` of Twilio backend `backend`, once its
/// signature is checked: 404 for a backend that is not a configured `twilio` one (or without
/// `app.hostname`), 403 for a missing or wrong signature.
pub fn verified_form(
    hooks: &Hooks,
    backend: &str,
    endpoint: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Vec<(String, String)>, ApiError> {
    let (Some(root), Some(token)) = (&hooks.root, hooks.twilio.get(backend)) else {
        return Err(ApiError::NotFound);
    };
    let mut url = answer::twilio_hook_url(root, backend, endpoint);
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(query);
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let given = headers
        .get(SIGNATURE_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !valid(token, &url, &params, given) {
        return Err(ApiError::BadSignature);
    }
    Ok(params)
}

fn valid(token: &Secret, url: &str, params: &[(String, String)], given: &[u8]) -> bool {
    let expected = signature(token.expose(), url, params);
    !given.is_empty() && bool::from(expected.as_bytes().ct_eq(given))
}

/// Records a call's status: whether it was answered, for the notification and attempt named
/// in the callback URL (`n`, `a`).
pub async fn status(
    State(state): State<AppState>,
    Path(backend): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let params = verified_form(
        &state.hooks,
        &backend,
        "status",
        query.as_deref(),
        &headers,
        &body,
    )?;
    let mut id = None;
    let mut attempt = None;
    for (name, value) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "n" => id = value.parse::<i64>().ok(),
            "a" => attempt = value.parse::<i64>().ok(),
            _ => {}
        }
    }
    let (Some(id), Some(attempt)) = (id, attempt) else {
        return Err(ApiError::BadRequest(
            "the callback URL must name the notification (`n`) and attempt (`a`)".into(),
        ));
    };
    let call_status = params
        .iter()
        .find(|(name, _)| name == "CallStatus")
        .map(|(_, value)| value.as_str())
        .unwrap_or("");
    let Some(answer) = answer::from_twilio(call_status) else {
        return Ok(Json(json!({})));
    };
    let matched = answer::record(
        &state.store,
        id,
        attempt,
        answer,
        now_ms(),
        answer::Replace::Always,
    )
    .await
    .map_err(NotifyError::from)?;
    if matched {
        tracing::info!(id, attempt, backend = %backend, answer, "call status recorded");
        state.hooks.wake.notify_one();
    } else {
        tracing::debug!(id, attempt, backend = %backend, answer, "call status for no current attempt");
    }
    Ok(Json(json!({})))
}

/// A TwiML answer.
fn twiml(body: String) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/xml")],
        format!("<Response>{body}</Response>"),
    )
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// A reply hook's request (`.../sms` or `.../voice`), its signature checked: only backends
/// with `replies` on take them.
pub struct Reply {
    backend: String,
    query: Option<String>,
    params: Vec<(String, String)>,
}

impl FromRequest<AppState> for Reply {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Reply, ApiError> {
        let (mut parts, body) = req.into_parts();
        let Path(backend) = Path::<String>::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        // The route's last segment names the hook Twilio was given (`sms`, `voice`).
        let endpoint = parts
            .uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_string();
        let query = parts.uri.query().map(str::to_string);
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest(format!("cannot read the request body: {}", e.body_text()))
                }
            })?;
        if !state.hooks.twilio_replies.contains(&backend) {
            return Err(ApiError::NotFound);
        }
        let params = verified_form(
            &state.hooks,
            &backend,
            &endpoint,
            query.as_deref(),
            &parts.headers,
            &body,
        )?;
        Ok(Reply {
            backend,
            query,
            params,
        })
    }
}

/// An SMS reply to the backend's number: acted on for the sender's latest page (or the one
/// it names), and answered by SMS; strangers get an empty answer.
pub async fn sms(
    State(state): State<AppState>,
    Reply {
        backend, params, ..
    }: Reply,
) -> Result<impl IntoResponse, ApiError> {
    let channel = format!("sms:{backend}");
    let answer = state
        .ack
        .sms_reply(&channel, param(&params, "From"), param(&params, "Body"))
        .await?;
    Ok(twiml(match answer {
        Some((_, text)) => format!("<Message>{}</Message>", xml_escape(&text)),
        None => String::new(),
    }))
}

/// A key pressed during a call (OnCall's menu: 1 acknowledge, 2 resolve, 3 silence 30
/// minutes), for the notification named in the URL (`n`), by the person called.
pub async fn voice(
    State(state): State<AppState>,
    Reply {
        backend,
        query,
        params,
    }: Reply,
) -> Result<impl IntoResponse, ApiError> {
    let id = form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "n")
        .and_then(|(_, v)| v.parse::<i64>().ok())
        .ok_or_else(|| ApiError::BadRequest("the URL must name the notification (`n`)".into()))?;
    let said = match crate::ack::command::Action::from_key(param(&params, "Digits")) {
        None => crate::ack::command::NOT_A_CHOICE.to_string(),
        Some(action) => {
            // An outgoing call's `To` is the person called.
            let user = match crate::directory::parse_phone(param(&params, "To")) {
                Ok(phone) => state.directory.find_by_phone(&phone).await?,
                Err(_) => None,
            };
            match user.filter(|u| u.active) {
                Some(user) => {
                    let channel = format!("voice:{backend}");
                    state
                        .ack
                        .act_on_notification(&channel, &user, id, action)
                        .await?
                }
                None => crate::ack::command::GOODBYE.to_string(),
            }
        }
    };
    Ok(twiml(format!(
        "<Say>{}</Say>",
        xml_escape(&crate::notify::shape::speech(&said))
    )))
}

fn xml_escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The example of Twilio's documentation on request validation.
    #[test]
    fn signature_matches_twilio_documented_example() {
        let params = pairs(&[
            ("Digits", "1234"),
            ("To", "+18005551212"),
            ("From", "+12349013030"),
            ("Caller", "+12349013030"),
            ("CallSid", "CA1234567890ABCDE"),
        ]);
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn a_changed_url_param_or_token_fails_the_check() {
        let token = Secret("secret-token".into());
        let url = "https://relay.example.com/hooks/twilio/tw/status?n=42&a=1";
        let params = pairs(&[
            ("CallStatus", "no-answer"),
            ("CallSid", "CA123"),
            ("To", "+4930123456"),
            ("From", "+15550001111"),
        ]);
        // Computed outside this code (Python's hmac and base64).
        let good = "ArrGU6MQfrxU48E3iNNZ6LC7zcw=";
        assert!(valid(&token, url, &params, good.as_bytes()));
        assert!(!valid(&token, url, &params, b""));
        assert!(!valid(
            &Secret("other".into()),
            url,
            &params,
            good.as_bytes()
        ));
        assert!(!valid(
            &token,
            &url.replace("n=42", "n=43"),
            &params,
            good.as_bytes()
        ));
        let mut changed = params.clone();
        changed[0].1 = "completed".into();
        assert!(!valid(&token, url, &changed, good.as_bytes()));
    }
}
