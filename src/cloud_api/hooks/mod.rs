//! Inbound hooks: what OnCall and the providers post back to the relay (OnCall's webhooks,
//! Twilio's call status, people's replies and button presses), under
//! `<app.hostname><app.path_prefix>/hooks/`. They carry no OnCall token; each checks its own
//! secret or the provider's signature.

pub mod act;
pub mod mattermost;
pub mod oncall;
pub mod slack;
pub mod sms;
pub mod twilio;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::{BackendSettings, Secret, Settings};

/// What the hook routes need: where they are publicly reachable, the providers' keys, and
/// how to wake the delivery workers.
#[derive(Debug, Default)]
pub struct Hooks {
    /// Public root of the hook routes (no trailing `/`); `None` without `app.hostname`.
    pub root: Option<String>,
    /// Auth tokens of the `twilio` backends, by backend name.
    pub twilio: BTreeMap<String, Secret>,
    /// Wakes the delivery workers when a reported answer makes a notification due.
    pub wake: Arc<Notify>,
    /// The `twilio` backends whose SMS replies and call keys are acted on (`replies: true`).
    pub twilio_replies: std::collections::BTreeSet<String>,
}

impl Hooks {
    /// The hooks of `settings`' backends.
    pub fn from_settings(settings: &Settings, wake: Arc<Notify>) -> Hooks {
        let twilio = settings
            .plugin
            .backends
            .iter()
            .filter_map(|(name, backend)| match backend {
                BackendSettings::Twilio(t) => Some((name.clone(), t.auth_token.clone())),
                _ => None,
            })
            .collect();
        let twilio_replies = settings
            .plugin
            .backends
            .iter()
            .filter_map(|(name, backend)| match backend {
                BackendSettings::Twilio(t) if t.replies => Some(name.clone()),
                _ => None,
            })
            .collect();
        Hooks {
            root: root(settings),
            twilio,
            wake,
            twilio_replies,
        }
    }
}

/// The public root of the hook routes: `app.hostname` and `app.path_prefix`, then `/hooks`.
/// Providers sign the URL they call, so it is built from configuration, never from a request.
pub fn root(settings: &Settings) -> Option<String> {
    let public = settings.public_url()?;
    Some(format!(
        "{}{}/hooks",
        public.trim_end_matches('/'),
        settings.app.path_prefix.trim_end_matches('/')
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_joins_hostname_and_prefix() {
        let mut s = Settings::default();
        assert_eq!(root(&s), None);
        s.app.hostname = "https://relay.example.com/".into();
        assert_eq!(root(&s).as_deref(), Some("https://relay.example.com/hooks"));
        s.app.path_prefix = "/oncall".into();
        assert_eq!(
            root(&s).as_deref(),
            Some("https://relay.example.com/oncall/hooks")
        );
    }
}
