//! The registry of configured backends and routing: which steps a notification goes through
//! (`plugin.routes.<kind>`, a person's preferred route, a request's chosen one), and the
//! settings checks that need every backend at once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{
    Backend, BoxFuture, Email, Exec, Flavour, Mattermost, Ntfy, Setup, Sip, Slack, Stdout,
    Telegram, Twilio, Webhook, exec, http,
};
use crate::config::{BackendSettings, OnTimeout, PluginSettings, RouteSettings};
use crate::directory::{Role, User};
use crate::notify::texts::{Reworded, Texts};
use crate::notify::{Notification, NotifyError};

/// Every configured backend, the routes between them, and the default.
#[derive(Debug, Clone)]
pub struct Backends {
    all: BTreeMap<String, Arc<dyn Backend>>,
    default: Arc<dyn Backend>,
    routes: BTreeMap<String, Vec<RouteSettings>>,
    /// Makes a page's one-click action links (set once the service knows its signing key).
    links: std::sync::OnceLock<LinkMaker>,
    /// Finds the alert group a page is about (set once the acknowledge loop exists; shared,
    /// so the workers' copies see it).
    incidents: Incidents,
}

/// Where pages find their alert group; cheap to clone, and every clone sees the lookup once
/// it is set.
#[derive(Debug, Clone, Default)]
pub struct Incidents(Arc<std::sync::OnceLock<IncidentLookup>>);

impl Incidents {
    /// The alert group `n` is about, when incident details are on and it is found within
    /// [`INCIDENT_WAIT`].
    pub async fn of(&self, n: &Notification) -> Option<serde_json::Value> {
        let lookup = self.0.get()?;
        if !crate::notify::buttons::is_page(&n.kind) {
            return None;
        }
        tokio::time::timeout(INCIDENT_WAIT, (lookup.0)(n.clone()))
            .await
            .ok()
            .flatten()
    }
}

/// Finds the alert group a notification is about, as templates see it (`alert_group`).
#[derive(Clone)]
pub struct IncidentLookup(
    pub Arc<dyn Fn(Notification) -> BoxFuture<'static, Option<serde_json::Value>> + Send + Sync>,
);

impl fmt::Debug for IncidentLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IncidentLookup")
    }
}

/// Longest wait for a page's incident details: the page goes out without them after it.
const INCIDENT_WAIT: Duration = Duration::from_secs(2);

/// Makes the one-click action links of a notification id.
#[derive(Clone)]
pub struct LinkMaker(pub Arc<dyn Fn(i64) -> Option<serde_json::Value> + Send + Sync>);

impl fmt::Debug for LinkMaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkMaker")
    }
}

/// One step of a notification's route.
#[derive(Debug, Clone)]
pub struct Step {
    /// The backend of this step.
    pub backend: Arc<dyn Backend>,
    /// Attempts before the next step takes over (`None`: `queue.max_attempts`).
    pub attempts: Option<u32>,
    /// Set when a delivered call counts only once answered: how long to wait for the status.
    pub answer_wait: Option<Duration>,
    /// Whether a timeout moves on to the next step at once.
    pub on_timeout: OnTimeout,
}

impl Backends {
    /// Sets how pages get their one-click action links (once; later calls are ignored).
    pub fn set_link_maker(&self, maker: LinkMaker) {
        let _ = self.links.set(maker);
    }

    /// Sets how pages find their alert group (once; later calls are ignored).
    pub fn set_incident_lookup(&self, lookup: IncidentLookup) {
        let _ = self.incidents.0.set(lookup);
    }

    /// Where pages find their alert group.
    pub fn incidents(&self) -> Incidents {
        self.incidents.clone()
    }

    /// The one-click action links of `n`, when it is a page and links are on.
    pub fn links_for(&self, n: &Notification) -> Option<serde_json::Value> {
        let maker = self.links.get()?;
        crate::notify::buttons::is_page(&n.kind)
            .then(|| (maker.0)(n.id))
            .flatten()
    }

    /// Builds the backends named under `plugin.backends`; `stdout` always exists. Nothing
    /// receives providers' status callbacks here (for commands that do not serve HTTP).
    pub fn from_settings(plugin: &PluginSettings) -> Result<Backends, NotifyError> {
        Backends::with_hooks(plugin, None)
    }

    /// Builds the backends; those that can report back (Twilio's call status) are told to
    /// call `hooks`, the public root of this service's hook routes (`.../hooks`).
    pub fn with_hooks(
        plugin: &PluginSettings,
        hooks: Option<&str>,
    ) -> Result<Backends, NotifyError> {
        let mut all: BTreeMap<String, Arc<dyn Backend>> = BTreeMap::new();
        all.insert("stdout".into(), Arc::new(Stdout::new("stdout")));
        if !plugin.backends.is_empty() {
            let client = http::client()?;
            for (name, settings) in &plugin.backends {
                let cx = Setup {
                    name,
                    client: client.clone(),
                    hooks: hooks.map(str::to_string),
                };
                let backend: Arc<dyn Backend> = match settings {
                    BackendSettings::Stdout {} => Arc::new(Stdout::new(name)),
                    BackendSettings::Webhook(s) => Arc::new(Webhook::new(&cx, s)?),
                    BackendSettings::Exec(s) => Arc::new(Exec::new(&cx, s)?),
                    BackendSettings::Email(s) => Arc::new(Email::new(&cx, s)?),
                    BackendSettings::Twilio(s) => Arc::new(Twilio::new(&cx, s)?),
                    BackendSettings::Sip(s) => Arc::new(Sip::new(&cx, s)?),
                    BackendSettings::Telegram(s) => Arc::new(Telegram::new(&cx, s)?),
                    BackendSettings::Slack(s) => Arc::new(Slack::new(&cx, s)?),
                    BackendSettings::Mattermost(s) => {
                        Arc::new(Mattermost::new(&cx, Flavour::Mattermost, s)?)
                    }
                    BackendSettings::Rocketchat(s) => {
                        Arc::new(Mattermost::new(&cx, Flavour::RocketChat, s)?)
                    }
                    BackendSettings::Ntfy(s) => Arc::new(Ntfy::new(&cx, s)?),
                };
                all.insert(name.clone(), backend);
            }
        }
        for (name, settings) in &plugin.messages {
            let inner = all
                .get(name)
                .cloned()
                .ok_or_else(|| NotifyError::BackendConfig {
                    name: name.clone(),
                    message: "`plugin.messages` names no backend under `plugin.backends`".into(),
                })?;
            let texts =
                Texts::new(name, plugin.backends.get(name), settings).map_err(|message| {
                    NotifyError::BackendConfig {
                        name: name.clone(),
                        message: format!("messages: {message}"),
                    }
                })?;
            all.insert(name.clone(), Arc::new(Reworded::new(inner, texts)));
        }
        let default =
            all.get(&plugin.backend)
                .cloned()
                .ok_or_else(|| NotifyError::BackendConfig {
                    name: plugin.backend.clone(),
                    message: "no such backend under `plugin.backends`".into(),
                })?;
        Ok(Backends {
            all,
            default,
            routes: plugin.routes.clone(),
            links: std::sync::OnceLock::new(),
            incidents: Incidents::default(),
        })
    }

    /// The backends to try for `n`, in order: the one chosen at acceptance (push and
    /// heartbeat settings), then the kind's matching routes, else the default backend.
    /// `user` is the directory entry of `n`'s user, when there is one.
    pub fn chain(&self, n: &Notification, user: Option<&User>) -> Vec<Step> {
        fn add(steps: &mut Vec<Step>, backend: &Arc<dyn Backend>, route: Option<&RouteSettings>) {
            if !steps.iter().any(|s| Arc::ptr_eq(&s.backend, backend)) {
                steps.push(Step {
                    backend: backend.clone(),
                    attempts: route.and_then(|r| r.attempts),
                    answer_wait: route.and_then(RouteSettings::answer_wait),
                    on_timeout: route.and_then(|r| r.on_timeout).unwrap_or_default(),
                });
            }
        }
        let mut steps: Vec<Step> = Vec::new();
        if let Some(explicit) = n.route.as_deref().and_then(|name| self.all.get(name)) {
            add(&mut steps, explicit, None);
        }
        if let Some(preferred) = user
            .and_then(|u| u.contacts.get("route"))
            .and_then(|name| self.all.get(name))
        {
            add(&mut steps, preferred, None);
        }
        for route in self.routes.get(&n.kind).into_iter().flatten() {
            if route_matches(route, n, user)
                && let Some(backend) = self.all.get(&route.backend)
            {
                add(&mut steps, backend, Some(route));
            }
        }
        if steps.is_empty() {
            add(&mut steps, &self.default, None);
        }
        steps
    }

    /// A backend by name.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Backend>> {
        self.all.get(name).cloned()
    }
}

/// Settings that work but are unsafe, one sentence each (a shell running a templated script):
/// `serve` logs them at start-up, `check-config` prints them.
pub fn config_warnings(plugin: &PluginSettings) -> Vec<String> {
    let shell = plugin
        .backends
        .iter()
        .filter_map(|(name, settings)| match settings {
            BackendSettings::Exec(e) => exec::shell_warning(name, e),
            _ => None,
        });
    shell.chain(unworded_templates(plugin)).collect()
}

/// Backends that word their texts (`plugin.messages`) but whose own template prints only
/// `message`, OnCall's text, so the wording would never be sent.
fn unworded_templates(plugin: &PluginSettings) -> impl Iterator<Item = String> + '_ {
    plugin.messages.keys().filter_map(|name| {
        let templates: Vec<&str> = match plugin.backends.get(name)? {
            BackendSettings::Webhook(w) => w.body.iter().map(String::as_str).chain([w.url.as_str()]).collect(),
            BackendSettings::Exec(e) => e.args.iter().map(String::as_str).collect(),
            _ => return None,
        };
        let prints = |word: &str| templates.iter().any(|t| t.contains(word));
        (prints("message") && !prints("text")).then(|| {
            format!("backend `{name}`: `plugin.messages.{name}` words the text, but its template prints `message` (OnCall's text as it came); print `text` to send the wording")
        })
    })
}

fn route_matches(route: &RouteSettings, n: &Notification, user: Option<&User>) -> bool {
    if let Some(important) = route.important
        && important != n.important()
    {
        return false;
    }
    if !route.roles.is_empty() {
        let Some(user) = user else { return false };
        if !route
            .roles
            .iter()
            .any(|r| Role::parse(r).is_ok_and(|role| role == user.role))
        {
            return false;
        }
    }
    if !route.users.is_empty() {
        let key = n.email.to_lowercase();
        if !route
            .users
            .iter()
            .any(|u| u.trim().to_lowercase() == key || u.trim() == n.user_id)
        {
            return false;
        }
    }
    true
}
