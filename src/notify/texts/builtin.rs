//! The built-in texts: one template per medium and kind, with the words of each language
//! put in. Texts avoid counted words ("alerts: 3", not "3 alerts") so that no language needs
//! plural rules, and SMS texts keep to characters of the GSM-7 alphabet where the language
//! allows, so that they fit one segment.

use crate::config::Medium;
use crate::notify::Kind;

/// The words and sentences of one language. Sentences are Jinja snippets that may use
/// `instance`, `last`, `schedule`, `start` and `end`.
struct Phrases {
    alert: &'static str,
    alerts: &'static str,
    count: &'static str,
    via: &'static str,
    intro: &'static str,
    number: &'static str,
    acknowledge: &'static str,
    heartbeat_lost: &'static str,
    heartbeat_back: &'static str,
    on_call: &'static str,
    reminder: &'static str,
    title_lost: &'static str,
    title_back: &'static str,
    title_on_call: &'static str,
    title_reminder: &'static str,
}

/// The languages with built-in texts.
pub(super) const LANGUAGES: [&str; 7] = ["en", "de", "fr", "es", "pt", "ru", "uk"];

fn phrases(language: &str) -> Option<Phrases> {
    Some(match language {
        "en" => Phrases {
            alert: "Alert",
            alerts: "Alerts",
            count: "alerts",
            via: "Via",
            intro: "Alert from Grafana OnCall.",
            number: "number",
            acknowledge: "Acknowledge",
            heartbeat_lost: "OnCall {{ instance }}: no heartbeats since {{ last }}.",
            heartbeat_back: "OnCall {{ instance }}: heartbeats are back.",
            on_call: "You are on call for {{ schedule }} until {{ end }}.",
            reminder: "Your on-call shift for {{ schedule }} starts {{ start }} (until {{ end }}).",
            title_lost: "OnCall heartbeat lost",
            title_back: "OnCall heartbeat back",
            title_on_call: "On call: {{ schedule }}",
            title_reminder: "On call soon: {{ schedule }}",
        },
        "de" => Phrases {
            alert: "Alarm",
            alerts: "Alarme",
            count: "Alarme",
            via: "Über",
            intro: "Alarm von Grafana OnCall.",
            number: "Nummer",
            acknowledge: "Bestätigen",
            heartbeat_lost: "OnCall {{ instance }}: keine Heartbeats seit {{ last }}.",
            heartbeat_back: "OnCall {{ instance }}: Heartbeats wieder da.",
            on_call: "Bereitschaft für {{ schedule }} bis {{ end }}.",
            reminder: "Deine Bereitschaft für {{ schedule }} beginnt am {{ start }} (bis {{ end }}).",
            title_lost: "OnCall-Heartbeat fehlt",
            title_back: "OnCall-Heartbeat wieder da",
            title_on_call: "Bereitschaft: {{ schedule }}",
            title_reminder: "Bald Bereitschaft: {{ schedule }}",
        },
        "fr" => Phrases {
            alert: "Alerte",
            alerts: "Alertes",
            count: "alertes",
            via: "Via",
            intro: "Alerte de Grafana OnCall.",
            number: "numéro",
            acknowledge: "Acquitter",
            heartbeat_lost: "OnCall {{ instance }} : plus de heartbeats depuis le {{ last }}.",
            heartbeat_back: "OnCall {{ instance }} : heartbeats rétablis.",
            on_call: "Astreinte pour {{ schedule }} jusqu'au {{ end }}.",
            reminder: "Votre astreinte {{ schedule }} commence le {{ start }} (fin le {{ end }}).",
            title_lost: "Heartbeat OnCall perdu",
            title_back: "Heartbeat OnCall rétabli",
            title_on_call: "Astreinte : {{ schedule }}",
            title_reminder: "Astreinte bientôt : {{ schedule }}",
        },
        "es" => Phrases {
            alert: "Alerta",
            alerts: "Alertas",
            count: "alertas",
            via: "Por",
            intro: "Alerta de Grafana OnCall.",
            number: "número",
            acknowledge: "Confirmar",
            heartbeat_lost: "OnCall {{ instance }}: sin heartbeats desde {{ last }}.",
            heartbeat_back: "OnCall {{ instance }}: heartbeats de nuevo.",
            on_call: "Guardia de {{ schedule }} hasta el {{ end }}.",
            reminder: "Tu guardia de {{ schedule }} empieza el {{ start }} (hasta el {{ end }}).",
            title_lost: "Heartbeat de OnCall perdido",
            title_back: "Heartbeat de OnCall de nuevo",
            title_on_call: "Guardia: {{ schedule }}",
            title_reminder: "Guardia pronto: {{ schedule }}",
        },
        "pt" => Phrases {
            alert: "Alerta",
            alerts: "Alertas",
            count: "alertas",
            via: "Via",
            intro: "Alerta do Grafana OnCall.",
            number: "número",
            acknowledge: "Reconhecer",
            heartbeat_lost: "OnCall {{ instance }}: sem heartbeats desde {{ last }}.",
            heartbeat_back: "OnCall {{ instance }}: heartbeats de volta.",
            on_call: "Plantão de {{ schedule }} até {{ end }}.",
            reminder: "Seu plantão de {{ schedule }} começa em {{ start }} (até {{ end }}).",
            title_lost: "Heartbeat do OnCall perdido",
            title_back: "Heartbeat do OnCall de volta",
            title_on_call: "Plantão: {{ schedule }}",
            title_reminder: "Plantão em breve: {{ schedule }}",
        },
        "ru" => Phrases {
            alert: "Алерт",
            alerts: "Алерты",
            count: "алертов",
            via: "Через",
            intro: "Алерт из Grafana OnCall.",
            number: "номер",
            acknowledge: "Подтвердить",
            heartbeat_lost: "OnCall {{ instance }}: нет heartbeat с {{ last }}.",
            heartbeat_back: "OnCall {{ instance }}: heartbeat восстановлен.",
            on_call: "Дежурство {{ schedule }} до {{ end }}.",
            reminder: "Ваше дежурство {{ schedule }} начнётся {{ start }} (до {{ end }}).",
            title_lost: "Нет heartbeat OnCall",
            title_back: "Heartbeat OnCall восстановлен",
            title_on_call: "Дежурство: {{ schedule }}",
            title_reminder: "Скоро дежурство: {{ schedule }}",
        },
        "uk" => Phrases {
            alert: "Алерт",
            alerts: "Алерти",
            count: "алертів",
            via: "Через",
            intro: "Алерт з Grafana OnCall.",
            number: "номер",
            acknowledge: "Підтвердити",
            heartbeat_lost: "OnCall {{ instance }}: немає heartbeat з {{ last }}.",
            heartbeat_back: "OnCall {{ instance }}: heartbeat відновлено.",
            on_call: "Чергування {{ schedule }} до {{ end }}.",
            reminder: "Ваше чергування {{ schedule }} почнеться {{ start }} (до {{ end }}).",
            title_lost: "Немає heartbeat OnCall",
            title_back: "Heartbeat OnCall відновлено",
            title_on_call: "Чергування: {{ schedule }}",
            title_reminder: "Скоро чергування: {{ schedule }}",
        },
        _ => return None,
    })
}

/// The word said before a number (`#42` is read "Nummer 42" in German), if `language` has
/// built-in texts.
pub(super) fn number_word(language: &str) -> Option<&'static str> {
    phrases(language).map(|p| p.number)
}

/// A page (call, SMS, push) as a short text message: number, title, integration, count and
/// the local time.
const PAGE_SMS: &str = r#"{%- if alert.shape == "sms" or alert.shape == "call" -%}
@alert@{% if alert.number %} #{{ alert.number }}{% endif %}: {{ alert.title }} ({{ alert.integration }}{% if alert.count %}, @count@: {{ alert.count }}{% endif %}) {{ created_at_ms|time }}
{%- elif alert.shape == "sms_bundle" -%}
@alerts@ {% for x in alert.numbers %}#{{ x }}{% if not loop.last %}, {% endif %}{% endfor %}{% if alert.more %} +{{ alert.more }}{% endif %} ({{ alert.integration }}{% if alert.more_integrations %} +{{ alert.more_integrations }}{% endif %}) {{ created_at_ms|time }}
{%- else -%}
{{ message }}
{%- endif -%}"#;

/// A page as speech: sentences, numbers said as numbers, no links.
const PAGE_SPEECH: &str = r#"{%- if alert.shape == "sms" or alert.shape == "call" -%}
@intro@ {% if alert.number %}@number@ {{ alert.number }}. {% endif %}{{ alert.title }}. @via@ {{ alert.integration }}.{% if alert.count %} @count@: {{ alert.count }}.{% endif %}
{%- elif alert.shape == "sms_bundle" -%}
@intro@ @alerts@: {{ alert.groups }}. @via@ {{ alert.integration }}.
{%- else -%}
{{ message }}
{%- endif -%}"#;

/// A page as a chat message: two lines, and the acknowledge link when there is one.
const PAGE_CHAT: &str = r#"{%- if alert.shape == "sms" or alert.shape == "call" -%}
@alert@{% if alert.number %} #{{ alert.number }}{% endif %}: {{ alert.title }}
{{ alert.integration }}{% if alert.stack %} · {{ alert.stack }}{% endif %}{% if alert.count %} · @count@: {{ alert.count }}{% endif %} · {{ created_at_ms|datetime }}
{%- elif alert.shape == "sms_bundle" -%}
@alerts@ {% for x in alert.numbers %}#{{ x }}{% if not loop.last %}, {% endif %}{% endfor %}{% if alert.more %} +{{ alert.more }}{% endif %}
{{ alert.integration }}{% if alert.more_integrations %} +{{ alert.more_integrations }}{% endif %}{% if alert.stack %} · {{ alert.stack }}{% endif %} · {{ created_at_ms|datetime }}
{%- else -%}
{{ message }}
{%- endif -%}
{%- if links is defined and links and links.acknowledge is defined %}
@acknowledge@: {{ links.acknowledge }}
{%- endif -%}"#;

/// OnCall's heartbeat stopping or resuming.
const HEARTBEAT: &str = r#"{%- if details and details.state is defined and details.state == "silent" -%}
{%- set instance = details.instance if details.instance is defined else details.integration -%}
{%- set last = details.last_beat_at_ms|datetime if details.last_beat_at_ms is defined else "?" -%}
@heartbeat_lost@
{%- elif details and details.state is defined and details.state == "restored" -%}
{%- set instance = details.instance if details.instance is defined else details.integration -%}
@heartbeat_back@
{%- else -%}
{{ message }}
{%- endif -%}"#;

/// A tracked schedule: "you are on call" and the reminder before a shift.
const SCHEDULE: &str = r#"{%- if details and details.shift_end_ms is defined -%}
{%- set schedule = details.schedule -%}
{%- set end = details.shift_end_ms|datetime -%}
{%- if details.shift_start_ms is defined -%}
{%- set start = details.shift_start_ms|datetime -%}
@reminder@
{%- else -%}
@on_call@
{%- endif -%}
{%- else -%}
{{ message }}
{%- endif -%}"#;

const TITLE_PAGE: &str = r#"{%- if alert.title -%}
@alert@{% if alert.number %} #{{ alert.number }}{% endif %}: {{ alert.title }}
{%- elif alert.shape == "sms_bundle" -%}
@alerts@ {% for x in alert.numbers %}#{{ x }}{% if not loop.last %}, {% endif %}{% endfor %}{% if alert.more %} +{{ alert.more }}{% endif %}
{%- else -%}
{{ title }}
{%- endif -%}"#;

const TITLE_HEARTBEAT: &str = r#"{%- if details and details.state is defined and details.state == "silent" -%}
@title_lost@
{%- elif details and details.state is defined and details.state == "restored" -%}
@title_back@
{%- else -%}
{{ title }}
{%- endif -%}"#;

const TITLE_SCHEDULE: &str = r#"{%- if details and details.schedule is defined -%}
{%- set schedule = details.schedule -%}
{%- if details.shift_start_ms is defined -%}
@title_reminder@
{%- else -%}
@title_on_call@
{%- endif -%}
{%- else -%}
{{ title }}
{%- endif -%}"#;

/// The built-in text template of `kind` for `medium` in `language`, if that language has one.
pub(super) fn text(medium: Medium, kind: Kind, language: &str) -> Option<String> {
    let skeleton = match kind {
        Kind::Heartbeat => HEARTBEAT,
        Kind::Schedule => SCHEDULE,
        Kind::Call | Kind::Sms | Kind::Push => match medium {
            Medium::Speech => PAGE_SPEECH,
            Medium::Sms => PAGE_SMS,
            Medium::Chat => PAGE_CHAT,
        },
    };
    Some(fill(skeleton, &phrases(language)?))
}

/// The built-in title template of `kind` in `language`, if that language has one.
pub(super) fn title(kind: Kind, language: &str) -> Option<String> {
    let skeleton = match kind {
        Kind::Heartbeat => TITLE_HEARTBEAT,
        Kind::Schedule => TITLE_SCHEDULE,
        Kind::Call | Kind::Sms | Kind::Push => TITLE_PAGE,
    };
    Some(fill(skeleton, &phrases(language)?))
}

fn fill(skeleton: &str, p: &Phrases) -> String {
    [
        ("@alert@", p.alert),
        ("@alerts@", p.alerts),
        ("@count@", p.count),
        ("@via@", p.via),
        ("@intro@", p.intro),
        ("@number@", p.number),
        ("@acknowledge@", p.acknowledge),
        ("@heartbeat_lost@", p.heartbeat_lost),
        ("@heartbeat_back@", p.heartbeat_back),
        ("@on_call@", p.on_call),
        ("@reminder@", p.reminder),
        ("@title_lost@", p.title_lost),
        ("@title_back@", p.title_back),
        ("@title_on_call@", p.title_on_call),
        ("@title_reminder@", p.title_reminder),
    ]
    .iter()
    .fold(skeleton.to_string(), |text, (token, words)| {
        text.replace(token, words)
    })
}
