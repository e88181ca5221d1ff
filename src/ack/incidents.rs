//! Incident details (`grafana.oncall.incident_details`): the alert group a page is about, read
//! from OnCall's API and offered to templates as `alert_group`, so a chat message can say its
//! state and link to it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::matching::pick;
use super::{Ack, texts};
use crate::notify::Notification;

/// How long an alert group read from OnCall is reused: the pages of one alert group to a
/// team go out within seconds of each other.
const FRESH: Duration = Duration::from_secs(60);
/// Alert groups kept at most; the cache starts over beyond.
const KEPT: usize = 256;

/// Alert groups recently read from OnCall, by id.
#[derive(Debug, Default)]
pub(super) struct Cache(Mutex<HashMap<String, (Instant, Value)>>);

impl Cache {
    fn get(&self, id: &str) -> Option<Value> {
        let cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(id)
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, id: String, value: Value) {
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= KEPT {
            cache.clear();
        }
        cache.insert(id, (Instant::now(), value));
    }
}

impl Ack {
    /// The alert group notification `n` is about, as templates see it; `None` when the page
    /// is linked to none (no webhook said who was paged, no key in the text) or OnCall does
    /// not answer.
    pub async fn incident_for(&self, n: &Notification) -> Option<Value> {
        let api = self.api.as_ref()?;
        let user = self
            .directory
            .find_for_delivery(&n.email)
            .await
            .ok()
            .flatten()?;
        // The notification in hand carries what was sent: no need to read it back.
        let payload = n.payload.as_ref().map(|p| p.to_string());
        let sent = texts::read(&n.message, payload.as_deref(), n.created_at);
        let candidates = self.candidates(&user).await.ok()?;
        let id = pick(&candidates, &sent)?.id.clone();
        if let Some(value) = self.incidents.get(&id) {
            return Some(value);
        }
        match api.alert_group(&id).await {
            Ok(Some(group)) => {
                let value = group.template_value();
                self.incidents.put(id, value.clone());
                Some(value)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(alert_group = %id, error = %e, "cannot read the alert group's details");
                None
            }
        }
    }
}
