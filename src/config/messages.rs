//! `plugin.messages.<backend>.*`: the texts a backend sends, per kind and language.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How one backend words its messages. Without an entry a backend sends OnCall's text as it
/// came.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessageSettings {
    /// Language for people without one of their own (`en` when absent).
    pub language: Option<String>,
    /// `speech`, `sms` or `chat`: what the built-in texts are written for; guessed from the
    /// backend's type when absent.
    pub medium: Option<Medium>,
    /// Use the built-in texts where no template of the person's language is configured.
    pub builtin: bool,
    /// Per kind (`call`, `sms`, `push`, `heartbeat`, `schedule`), per language tag: the text.
    pub templates: BTreeMap<String, BTreeMap<String, TemplateSource>>,
    /// Per kind, per language tag: the title (push and ntfy titles, e-mail subjects).
    pub titles: BTreeMap<String, BTreeMap<String, TemplateSource>>,
}

impl Default for MessageSettings {
    fn default() -> Self {
        MessageSettings {
            language: None,
            medium: None,
            builtin: true,
            templates: BTreeMap::new(),
            titles: BTreeMap::new(),
        }
    }
}

/// What a backend's texts are read or shown on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Medium {
    /// Read out by a speech engine: no links, no markup.
    Speech,
    /// A text message: short, one segment where possible.
    Sms,
    /// A chat or e-mail message: may carry a link.
    Chat,
}

impl Medium {
    /// Every medium.
    pub const ALL: [Medium; 3] = [Medium::Speech, Medium::Sms, Medium::Chat];

    /// The name used in settings and templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Medium::Speech => "speech",
            Medium::Sms => "sms",
            Medium::Chat => "chat",
        }
    }

    /// Parses a medium name.
    pub fn parse(raw: &str) -> Option<Medium> {
        match raw {
            "speech" => Some(Medium::Speech),
            "sms" => Some(Medium::Sms),
            "chat" => Some(Medium::Chat),
            _ => None,
        }
    }
}

/// A template written inline, or read from a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TemplateSource {
    /// The template itself.
    Inline(String),
    /// A file holding it.
    File {
        /// Path of the template file.
        file: PathBuf,
    },
}
