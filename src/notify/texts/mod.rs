//! What people read: each backend's texts per kind and language (`plugin.messages.<backend>`),
//! rendered at delivery for the person's language and time zone.
//!
//! A text is chosen along the languages the person's own tag (`pt-BR`), its first subtag
//! (`pt`), the backend's `language` and its first subtag, then English; at each language a
//! configured template wins over the built-in one. Without any, OnCall's text goes as it came.
//! Templates see every variable of [`Context`] (OnCall's text stays `message`, its parts are
//! `alert.*`), plus `medium`. Speech is always cleaned of links and markup.

mod builtin;
pub(crate) mod clock;
mod decorate;
mod variables;

use std::collections::BTreeSet;
use std::path::Path;

use minijinja::{Environment, Value, context};

pub use decorate::Reworded;

use super::template::{self, Context};
use super::{Kind, Notification, shape};
use crate::config::{BackendSettings, Medium, MessageSettings, TemplateSource};

/// A backend's compiled texts.
#[derive(Debug)]
pub struct Texts {
    env: Environment<'static>,
    /// `None`: guessed per notification from the backend type and the kind.
    medium: Option<Medium>,
    /// Whether the backend speaks calls (Twilio) or everything (SIP).
    speaks: Speaks,
    language: String,
    builtin: bool,
    /// Names of the configured templates (`text/sms/de`, `title/push/en`).
    configured: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Speaks {
    Never,
    Calls,
    Always,
    /// Text messages: webhook gateways and programs.
    Sms,
}

/// What a notification reads like for one person on one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worded {
    /// The text to send.
    pub text: String,
    /// The title, where one was chosen.
    pub title: Option<String>,
    /// The language the text was written in.
    pub language: String,
    /// What it was written for.
    pub medium: Medium,
}

impl Texts {
    /// Compiles `settings` for the backend `name` (`backend` is its type, `None` for the built-in
    /// `stdout`); the error names the template's file or setting, the line and the variable.
    pub fn new(
        name: &str,
        backend: Option<&BackendSettings>,
        settings: &MessageSettings,
    ) -> Result<Texts, String> {
        let language = match settings.language.as_deref() {
            Some(tag) => crate::directory::parse_language(tag).map_err(|e| e.to_string())?,
            None => "en".to_string(),
        };
        let mut env = template::plain_environment();
        let mut configured = BTreeSet::new();
        let tables = [
            ("text", "templates", &settings.templates),
            ("title", "titles", &settings.titles),
        ];
        for (what, option, table) in tables {
            for (kind, languages) in table {
                let Some(kind) = Kind::parse(kind) else {
                    return Err(format!(
                        "`{option}.{kind}`: not a kind (call, sms, push, heartbeat, schedule)"
                    ));
                };
                for (tag, source) in languages {
                    let tag = crate::directory::parse_language(tag)
                        .map_err(|e| format!("`{option}.{kind}.{tag}`: {e}"))?;
                    let setting = format!("plugin.messages.{name}.{option}.{kind}.{tag}");
                    let (origin, text) = read(source, &setting)?;
                    let id = format!("{what}/{kind}/{tag}");
                    env.add_template_owned(id.clone(), text.clone())
                        .map_err(|e| compile_error(&origin, &e))?;
                    if let Ok(t) = env.get_template(&id) {
                        variables::check(&env, &t, &text, &origin)?;
                    }
                    configured.insert(id);
                }
            }
        }
        if settings.builtin {
            add_builtins(&mut env)?;
        }
        let speaks = match backend {
            Some(BackendSettings::Sip(_)) => Speaks::Always,
            Some(BackendSettings::Twilio(_)) => Speaks::Calls,
            Some(BackendSettings::Webhook(_) | BackendSettings::Exec(_)) => Speaks::Sms,
            _ => Speaks::Never,
        };
        Ok(Texts {
            env,
            medium: settings.medium,
            speaks,
            language,
            builtin: settings.builtin,
            configured,
        })
    }

    /// What this backend writes a notification of `kind` for.
    pub fn medium(&self, kind: Kind) -> Medium {
        self.medium.unwrap_or(match (self.speaks, kind) {
            (Speaks::Always, _) | (Speaks::Calls, Kind::Call) => Medium::Speech,
            (Speaks::Calls | Speaks::Sms, _) => Medium::Sms,
            (Speaks::Never, _) => Medium::Chat,
        })
    }

    /// The languages tried for a person with `language`, in order.
    fn languages(&self, language: Option<&str>) -> Vec<String> {
        let mut tried: Vec<String> = Vec::new();
        let primary = |tag: &str| tag.split('-').next().unwrap_or(tag).to_string();
        let candidates = [
            language.map(str::to_string),
            language.map(primary),
            Some(self.language.clone()),
            Some(primary(&self.language)),
            Some("en".to_string()),
        ];
        for tag in candidates.into_iter().flatten() {
            if !tried.contains(&tag) {
                tried.push(tag);
            }
        }
        tried
    }

    /// The text (and title) of `n` for its reader; `None` when nothing is configured or built
    /// in for its kind, so that OnCall's text goes as it came.
    pub fn word(&self, n: &Notification) -> Result<Option<Worded>, String> {
        let Some(kind) = Kind::parse(&n.kind) else {
            return Ok(None);
        };
        let medium = self.medium(kind);
        let languages = self.languages(n.reader.language.as_deref());
        let Some((language, source)) = self.pick("text", kind, medium, &languages) else {
            return Ok(None);
        };
        let ctx = self.context(n, &language, medium);
        let mut text = match self.render(&source, &ctx) {
            Ok(text) => text,
            // A built-in text that does not fit odd details sends OnCall's text instead of
            // failing the page; an operator's own template fails loudly.
            Err(e) if is_builtin(&source) => {
                tracing::warn!(id = n.id, template = %source, error = %e, "built-in text failed; sending OnCall's text");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if medium == Medium::Speech {
            text = shape::speech(&say_numbers(&text, &language));
        }
        let title = match self.pick("title", kind, medium, &languages) {
            Some((title_language, source)) => {
                let ctx = self.context(n, &title_language, medium);
                match self.render(&source, &ctx) {
                    Ok(title) => Some(title.trim().to_string()).filter(|t| !t.is_empty()),
                    Err(_) if is_builtin(&source) => None,
                    Err(e) => return Err(e),
                }
            }
            None => None,
        };
        Ok(Some(Worded {
            text: text.trim().to_string(),
            title,
            language,
            medium,
        }))
    }

    /// The first language with a configured or built-in template, and that template.
    fn pick(
        &self,
        what: &str,
        kind: Kind,
        medium: Medium,
        languages: &[String],
    ) -> Option<(String, String)> {
        languages.iter().find_map(|tag| {
            let id = format!("{what}/{kind}/{tag}");
            if self.configured.contains(&id) {
                return Some((tag.clone(), id));
            }
            let id = builtin_id(what, medium, kind, tag);
            (self.builtin && self.env.get_template(&id).is_ok()).then(|| (tag.clone(), id))
        })
    }

    fn context(&self, n: &Notification, language: &str, medium: Medium) -> Value {
        let base = Context::of(n).value();
        context! { language => language, medium => medium.as_str(), ..base }
    }

    fn render(&self, id: &str, ctx: &Value) -> Result<String, String> {
        template::render(&self.env, id, ctx).map_err(|e| e.to_string())
    }
}

/// `text` with `#42` written as the language's "number 42", so that speech does not fall
/// back to the English word.
fn say_numbers(text: &str, language: &str) -> String {
    let primary = language.split('-').next().unwrap_or(language);
    let Some(word) = builtin::number_word(primary) else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '#' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push_str(word);
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether the template named `id` is a built-in one.
fn is_builtin(id: &str) -> bool {
    id.starts_with("builtin")
}

/// The name of a built-in template in a backend's environment.
fn builtin_id(what: &str, medium: Medium, kind: Kind, language: &str) -> String {
    match what {
        "text" => format!("builtin/{}/{kind}/{language}", medium.as_str()),
        _ => format!("builtin-title/{kind}/{language}"),
    }
}

/// Compiles every built-in text and title into `env`.
fn add_builtins(env: &mut Environment<'static>) -> Result<(), String> {
    for kind in Kind::ALL {
        for language in builtin::LANGUAGES {
            for medium in Medium::ALL {
                if let Some(text) = builtin::text(medium, kind, language) {
                    template::add(env, &builtin_id("text", medium, kind, language), &text)?;
                }
            }
            if let Some(text) = builtin::title(kind, language) {
                template::add(
                    env,
                    &builtin_id("title", Medium::Chat, kind, language),
                    &text,
                )?;
            }
        }
    }
    Ok(())
}

/// The text of a template setting and where it came from (the file, or the setting's name).
fn read(source: &TemplateSource, setting: &str) -> Result<(String, String), String> {
    match source {
        TemplateSource::Inline(text) => Ok((format!("`{setting}`"), text.clone())),
        TemplateSource::File { file } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("{}: cannot read: {e}", shown(file)))?;
            Ok((shown(file), text))
        }
    }
}

/// A template's syntax error, with its origin and line first.
fn compile_error(origin: &str, e: &minijinja::Error) -> String {
    let what = e.detail().unwrap_or("invalid template");
    match e.line() {
        Some(line) => format!("{origin}, line {line}: {}: {what}", e.kind()),
        None => format!("{origin}: {}: {what}", e.kind()),
    }
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// The built-in languages (for `templates render` and the README).
pub fn builtin_languages() -> &'static [&'static str] {
    &builtin::LANGUAGES
}

#[cfg(test)]
mod tests;

/// What `templates render` previews: one text as a backend would send it.
#[derive(Debug, Clone)]
pub struct Preview {
    /// The text (OnCall's text unchanged when the backend words nothing for the kind).
    pub text: String,
    /// The title, where one was chosen.
    pub title: Option<String>,
    /// The language and medium it was written in, when it was worded.
    pub worded: Option<(String, Medium)>,
    /// Whether `plugin.messages` has an entry for the backend (otherwise the built-in texts
    /// are shown as they would be once enabled).
    pub configured: bool,
}

/// The text `backend` would send for a notification of `kind` with OnCall's `text` to a
/// reader of `language` in `timezone`; `details` are the kind's details (a heartbeat's or a
/// schedule's, as in the README).
pub fn preview(
    plugin: &crate::config::PluginSettings,
    backend: &str,
    kind: Kind,
    reader: super::Reader,
    text: &str,
    details: Option<serde_json::Value>,
) -> Result<Preview, String> {
    let settings = plugin.backends.get(backend);
    if settings.is_none() && backend != "stdout" {
        return Err(format!(
            "no backend named `{backend}` under `plugin.backends`"
        ));
    }
    let configured = plugin.messages.get(backend);
    let texts = Texts::new(
        backend,
        settings,
        configured.unwrap_or(&MessageSettings::default()),
    )?;
    let n = Notification {
        id: 1,
        kind: kind.as_str().to_string(),
        user_id: String::new(),
        email: String::new(),
        name: String::new(),
        phone_number: None,
        message: text.to_string(),
        payload: details,
        route: None,
        attempt: 1,
        stage: 0,
        stage_attempts: 1,
        contacts: Default::default(),
        links: None,
        alert_group: None,
        created_at: crate::store::now_ms(),
        parts_sent: 0,
        parts_digest: None,
        parts_log: Default::default(),
        answer: None,
        answer_deadline: None,
        reader,
    };
    let worded = texts.word(&n)?;
    Ok(match worded {
        Some(w) => Preview {
            text: w.text,
            title: w.title,
            worded: Some((w.language, w.medium)),
            configured: configured.is_some(),
        },
        None => Preview {
            text: text.to_string(),
            title: None,
            worded: None,
            configured: configured.is_some(),
        },
    })
}
