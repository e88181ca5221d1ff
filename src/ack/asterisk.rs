//! Asterisk: whether a call was answered, and the key the person pressed, from the event
//! stream of the `sip` backend's Stasis application (`app`).
//!
//! Calls are originated into the app with the channel id `oncall-<notification>-<attempt>`.
//! Asterisk subscribes the app to the channel, so the relay hears of it twice at most:
//! - `StasisStart` when someone picks up: the call is recorded as answered, and the channel
//!   is handed to the backend's dialplan location (`context`, `extension`, `priority`), which
//!   says the message. There is no speech in ARI itself, so the dialplan does the talking.
//! - `ChannelDestroyed` for a call nobody answered, with the hang-up cause: busy, no answer or
//!   failed.
//!
//! The dialplan may read a key and come back with `Stasis(<app>,key,${KEY})`, or come back with
//! `Stasis(<app>,keys)` and let the relay take the next key from the event stream
//! (`ChannelDtmfReceived`). With `replies` on, the key acts on the alert group (1 acknowledge,
//! 2 resolve, 3 silence 30 minutes), the answer to say is put in the channel variable
//! `ONCALL_REPLY`, and the channel continues at the dialplan's next priority.
//!
//! Asterisk lets one connection read an app's events, so a lease makes sure one replica at a
//! time listens to each backend's app.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Url;
use reqwest_websocket::{Message, Upgrade};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Ack;
use super::command::GOODBYE;
use crate::config::{Secret, SipSettings};
use crate::notify::answer;
use crate::notify::backends::http::error_chain;
use crate::notify::backends::sip::{ari_url, parse_channel_id};
use crate::notify::shape;
use crate::store::{Store, lease, now_ms};

/// How long a listener's lease lasts without renewal.
const LEASE: Duration = Duration::from_secs(60);
/// Longest time one ARI request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The channel variable the dialplan reads the answer to a key from.
pub const REPLY_VARIABLE: &str = "ONCALL_REPLY";

/// A `sip` backend's Stasis application and how to reach it.
#[derive(Debug, Clone)]
pub struct Asterisk {
    name: String,
    events_url: Url,
    channels_url: Url,
    username: String,
    password: Secret,
    /// Where an answered call goes to hear its message.
    dialplan: [(&'static str, String); 3],
    replies: bool,
    client: reqwest::Client,
}

#[derive(Debug, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    channel: Option<Channel>,
    #[serde(default)]
    cause: Option<i64>,
    #[serde(default)]
    digit: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Channel {
    id: String,
}

impl Asterisk {
    /// The app of `sip` backend `name`; `None` when the backend has no `app`.
    pub fn new(name: &str, s: &SipSettings) -> Result<Option<Asterisk>, super::AckError> {
        let Some(app) = s.app.as_deref().map(str::trim).filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        let bad = |e: String| super::AckError::Config(format!("plugin.backends.{name}: {e}"));
        let mut events_url = ari_url(&s.url, "events").map_err(bad)?;
        events_url.query_pairs_mut().append_pair("app", app);
        crate::install_crypto_provider();
        // No overall timeout: the event stream stays open for as long as the lease is held.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("oncall-relay/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| super::AckError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Some(Asterisk {
            name: name.to_string(),
            events_url,
            channels_url: ari_url(&s.url, "channels").map_err(bad)?,
            username: s.username.trim().to_string(),
            password: s.password.clone(),
            dialplan: [
                ("context", s.context.trim().to_string()),
                ("extension", s.extension.trim().to_string()),
                ("priority", s.priority.to_string()),
            ],
            replies: s.replies,
            client,
        }))
    }

    /// Listens to the app's events while this replica holds its lease, until `shutdown`.
    pub fn spawn_listener(
        self,
        ack: Ack,
        store: Store,
        wake: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let lease =
                lease::Runner::new(store.clone(), format!("ari-events:{}", self.name), LEASE);
            let mut pace = lease::Pace::default();
            loop {
                let round = match lease.renew().await {
                    true => {
                        let listener = Listener {
                            asterisk: &self,
                            ack: &ack,
                            store: &store,
                            wake: &wake,
                            waiting_for_key: Mutex::default(),
                        };
                        Some(listener.listen(&lease, &shutdown).await)
                    }
                    false => None,
                };
                let failed = |e: &str| tracing::warn!(backend = %self.name, error = %e, "cannot read Asterisk's events: calls are not known to be answered");
                if !lease
                    .pause(&mut pace, round, Duration::from_secs(1), &shutdown, failed)
                    .await
                {
                    break;
                }
            }
            lease.release().await;
        })
    }

    /// `POST channels/{id}/{action}` with `query`.
    async fn channel_request(
        &self,
        channel: &str,
        action: &str,
        query: &[(&str, &str)],
    ) -> Result<(), String> {
        let mut url = self.channels_url.clone();
        url.path_segments_mut()
            .map_err(|()| "the ARI URL cannot take a path".to_string())?
            .push(channel)
            .push(action);
        url.query_pairs_mut().extend_pairs(query);
        let response = self
            .client
            .post(url)
            .basic_auth(&self.username, Some(self.password.expose()))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| error_chain(&e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("{action}: HTTP {}", response.status()));
        }
        Ok(())
    }

    /// Hands `channel` back to the dialplan: to the backend's location (`to_location`), or to
    /// the priority after the `Stasis()` call that brought it here.
    async fn continue_in_dialplan(&self, channel: &str, to_location: bool) {
        let query: Vec<(&str, &str)> = if to_location {
            self.dialplan
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect()
        } else {
            Vec::new()
        };
        if let Err(e) = self.channel_request(channel, "continue", &query).await {
            tracing::warn!(backend = %self.name, channel, error = %e, "cannot hand the call to the dialplan");
        }
    }
}

/// One connection's worth of listening.
struct Listener<'a> {
    asterisk: &'a Asterisk,
    ack: &'a Ack,
    store: &'a Store,
    wake: &'a Notify,
    /// Channels waiting in the app for a key (`Stasis(<app>,keys)`). A key pressed anywhere
    /// else (the dialplan's own `Read()`) is the dialplan's business, never acted on twice.
    waiting_for_key: Mutex<HashSet<String>>,
}

impl Listener<'_> {
    /// Reads events until the stream ends, the lease is lost (`Ok`) or `shutdown`.
    async fn listen(
        &self,
        lease: &lease::Runner,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let a = self.asterisk;
        let response = a
            .client
            .get(a.events_url.clone())
            .basic_auth(&a.username, Some(a.password.expose()))
            .upgrade()
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let mut events = response
            .into_websocket()
            .await
            .map_err(|e| format!("HTTP {status}: {e}"))?;
        tracing::info!(backend = %a.name, "listening to Asterisk's events");
        let mut renewal = tokio::time::interval(LEASE / 3);
        renewal.tick().await;
        loop {
            tokio::select! {
                message = events.next() => match message {
                    Some(Ok(Message::Text(text))) => self.on_event(&text).await,
                    Some(Ok(Message::Close { .. })) | None => {
                        return Err("Asterisk closed the event stream".into())
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.to_string()),
                },
                _ = renewal.tick() => {
                    if !lease.renew().await {
                        return Ok(());
                    }
                }
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    async fn on_event(&self, text: &str) {
        let a = self.asterisk;
        let event = match serde_json::from_str::<Event>(text) {
            Ok(event) => event,
            Err(e) => {
                tracing::debug!(backend = %a.name, error = %e, "an Asterisk event that is not understood");
                return;
            }
        };
        let Some(channel) = event.channel else {
            return;
        };
        let ours = parse_channel_id(&channel.id);
        let first_arg = event.args.first().map(String::as_str);
        match (event.kind.as_str(), ours) {
            ("StasisStart", Some((id, _))) if first_arg == Some("key") => {
                let key = event.args.get(1).cloned().unwrap_or_default();
                self.act_on_key(channel.id, id, key);
            }
            ("StasisStart", Some(_)) if first_arg == Some("keys") => {
                lock(&self.waiting_for_key).insert(channel.id);
            }
            // Taken out of the waiting set as it is acted on: one key per wait.
            ("ChannelDtmfReceived", Some((id, _)))
                if lock(&self.waiting_for_key).remove(&channel.id) =>
            {
                self.act_on_key(channel.id, id, event.digit.unwrap_or_default());
            }
            ("StasisEnd", _) => {
                lock(&self.waiting_for_key).remove(&channel.id);
            }
            ("StasisStart", Some((id, attempt))) => {
                self.record(id, attempt, answer::ANSWERED, answer::Replace::Always)
                    .await;
                a.continue_in_dialplan(&channel.id, true).await;
            }
            // Not a call of this relay's: whoever sent it here gets it back.
            ("StasisStart", None) => a.continue_in_dialplan(&channel.id, false).await,
            ("ChannelDestroyed", Some((id, attempt))) => {
                lock(&self.waiting_for_key).remove(&channel.id);
                let unanswered = answer::from_hangup_cause(event.cause.unwrap_or(0));
                self.record(id, attempt, unanswered, answer::Replace::IfUnknown)
                    .await;
            }
            _ => {}
        }
    }

    /// Acts on `key` pressed during the call of notification `id`. Acting asks OnCall's API,
    /// so it runs on its own and the stream is not held up meanwhile.
    fn act_on_key(&self, channel: String, id: i64, key: String) {
        let (asterisk, ack) = (self.asterisk.clone(), self.ack.clone());
        tokio::spawn(async move {
            asterisk.key_pressed(&ack, &channel, id, &key).await;
        });
    }

    async fn record(&self, id: i64, attempt: i64, what: &str, replace: answer::Replace) {
        match answer::record(self.store, id, attempt, what, now_ms(), replace).await {
            Ok(true) => {
                tracing::info!(id, attempt, backend = %self.asterisk.name, answer = what, "call status recorded");
                self.wake.notify_one();
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(id, attempt, backend = %self.asterisk.name, error = %e, "cannot record the call's status");
            }
        }
    }
}

impl Asterisk {
    /// Acts on `key`, pressed during the call of notification `id`, and lets the dialplan say
    /// the outcome.
    async fn key_pressed(&self, ack: &Ack, channel: &str, id: i64, key: &str) {
        let said = if self.replies {
            let via = format!("voice:{}", self.name);
            match ack.key_press(&via, id, key).await {
                Ok(said) => said,
                Err(e) => {
                    tracing::warn!(backend = %self.name, id, error = %e, "cannot act on a key pressed during a call");
                    "Sorry, that did not work.".to_string()
                }
            }
        } else {
            GOODBYE.to_string()
        };
        let said = shape::speech(&said);
        if let Err(e) = self
            .channel_request(
                channel,
                "variable",
                &[("variable", REPLY_VARIABLE), ("value", &said)],
            )
            .await
        {
            tracing::warn!(backend = %self.name, channel, error = %e, "cannot set the call's reply");
        }
        self.continue_in_dialplan(channel, false).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_with_and_without_optional_fields() {
        let start: Event = serde_json::from_str(
            r#"{"type":"StasisStart","application":"oncall","args":["key","1"],
                "channel":{"id":"oncall-7-1","state":"Up"},"timestamp":"2026-12-01T04:00:00.000+0000"}"#,
        )
        .expect("StasisStart");
        assert_eq!(
            (start.kind.as_str(), start.args.as_slice()),
            (
                "StasisStart",
                ["key".to_string(), "1".to_string()].as_slice()
            )
        );
        let gone: Event = serde_json::from_str(
            r#"{"type":"ChannelDestroyed","cause":17,"cause_txt":"User busy","channel":{"id":"oncall-7-1"}}"#,
        )
        .expect("ChannelDestroyed");
        assert_eq!(gone.cause, Some(17));
        let other: Event =
            serde_json::from_str(r#"{"type":"ApplicationReplaced"}"#).expect("other");
        assert!(other.channel.is_none());
    }
}
