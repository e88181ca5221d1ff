use std::collections::BTreeMap;

use super::*;
use crate::config::{SipSettings, WebhookSettings};
use crate::notify::backends::testing::notification;
use crate::notify::sms::{self, Encoding};
use crate::notify::{Notification, Reader};

const SMS: &str = "Grafana OnCall: Alert group #42\"CPU high on db-1\" from stack: \"prod\", integration: Grafana Alerting, alerts registered: 3.";
const CALL: &str = "You are invited to check an Alert Group from Grafana OnCall. Alert via Grafana Alerting with title CPU high on db-1 triggered 3 times";
/// 2025-12-01 14:00 UTC.
const AT: i64 = 1_764_597_600_000;

fn gateway() -> BackendSettings {
    BackendSettings::Webhook(WebhookSettings::default())
}

fn texts(settings: MessageSettings) -> Texts {
    Texts::new("gw", Some(&gateway()), &settings).expect("compiles")
}

fn to(kind: &str, message: &str, language: Option<&str>, timezone: &str) -> Notification {
    Notification {
        message: message.into(),
        created_at: AT,
        reader: Reader {
            language: language.map(str::to_string),
            timezone: Some(timezone.into()),
            original: None,
        },
        ..notification(kind)
    }
}

fn inline(pairs: &[(&str, &str, &str)]) -> BTreeMap<String, BTreeMap<String, TemplateSource>> {
    let mut table: BTreeMap<String, BTreeMap<String, TemplateSource>> = BTreeMap::new();
    for (kind, language, text) in pairs {
        table.entry(kind.to_string()).or_default().insert(
            language.to_string(),
            TemplateSource::Inline(text.to_string()),
        );
    }
    table
}

#[test]
fn a_german_reader_in_berlin_gets_a_german_sms_with_local_time() {
    let t = texts(MessageSettings::default());
    let w = t
        .word(&to("sms", SMS, Some("de"), "Europe/Berlin"))
        .expect("renders")
        .expect("worded");
    assert_eq!(
        w.text,
        "Alarm #42: CPU high on db-1 (Grafana Alerting, Alarme: 3) 15:00"
    );
    assert_eq!((w.language.as_str(), w.medium), ("de", Medium::Sms));
    assert_eq!(w.title.as_deref(), Some("Alarm #42: CPU high on db-1"));
}

#[test]
fn every_builtin_page_sms_fits_one_segment() {
    let t = texts(MessageSettings::default());
    for language in builtin_languages() {
        let w = t
            .word(&to("sms", SMS, Some(language), "Europe/Kyiv"))
            .expect("renders")
            .expect("worded");
        let m = sms::measure(&w.text);
        assert_eq!(m.segments, 1, "{language}: {} ({m:?})", w.text);
        let expected = if matches!(*language, "ru" | "uk") {
            Encoding::Ucs2
        } else {
            Encoding::Gsm7
        };
        assert_eq!(m.encoding, expected, "{language}: {}", w.text);
    }
}

#[test]
fn speech_is_free_of_links_and_markup() {
    let sip = BackendSettings::Sip(
        serde_json::from_value::<SipSettings>(
            serde_json::json!({"url": "http://asterisk:8088", "username": "u", "password": "p"}),
        )
        .expect("sip settings"),
    );
    let configured = MessageSettings {
        templates: inline(&[(
            "call",
            "en",
            "<b>{{ alert.title }}</b> see https://grafana.example/a/{{ alert.count }} or www.x.org",
        )]),
        ..MessageSettings::default()
    };
    let t = Texts::new("sip", Some(&sip), &configured).expect("compiles");
    let w = t
        .word(&to("call", CALL, None, "UTC"))
        .expect("renders")
        .expect("worded");
    assert_eq!(w.medium, Medium::Speech);
    assert_eq!(w.text, "CPU high on db-1 see (link) or (link)");
    // The built-in speech in every language has no link either, not even a one-click one.
    let t = Texts::new("sip", Some(&sip), &MessageSettings::default()).expect("compiles");
    for language in builtin_languages() {
        let mut n = to("call", CALL, Some(language), "UTC");
        n.links = Some(serde_json::json!({"acknowledge": "https://relay.example/a/1"}));
        let w = t.word(&n).expect("renders").expect("worded");
        assert!(
            !w.text.contains("http") && !w.text.contains('#'),
            "{}",
            w.text
        );
        assert!(w.text.contains("42") || w.text.contains('3'), "{}", w.text);
    }
}

#[test]
fn speech_reads_numbers_in_the_readers_language() {
    let configured = MessageSettings {
        medium: Some(Medium::Speech),
        templates: inline(&[("call", "de", "Alarm #{{ alert.count }}: {{ message }}")]),
        ..MessageSettings::default()
    };
    let t = texts(configured);
    let w = t
        .word(&to("call", CALL, Some("de"), "UTC"))
        .expect("renders")
        .expect("worded");
    assert!(
        w.text.starts_with("Alarm Nummer 3: You are invited"),
        "{}",
        w.text
    );
    assert!(
        !w.text.contains('#') && !w.text.contains("number"),
        "{}",
        w.text
    );
}

#[test]
fn the_chat_text_carries_the_acknowledge_link() {
    let slack = BackendSettings::Slack(Default::default());
    let t = Texts::new("chat", Some(&slack), &MessageSettings::default()).expect("compiles");
    let mut n = to("sms", SMS, Some("fr"), "Europe/Paris");
    n.links = Some(serde_json::json!({"acknowledge": "https://relay.example/a/1"}));
    let w = t.word(&n).expect("renders").expect("worded");
    assert_eq!(
        w.text,
        "Alerte #42: CPU high on db-1\nGrafana Alerting · prod · alertes: 3 · 01/12/2025 15:00 CET\nAcquitter: https://relay.example/a/1"
    );
}

#[test]
fn languages_fall_back_from_the_reader_to_the_backend_to_english() {
    let t = texts(MessageSettings {
        language: Some("de".into()),
        builtin: false,
        templates: inline(&[
            ("sms", "pt", "pt {{ alert.number }}"),
            ("sms", "de", "de {{ alert.number }}"),
            ("sms", "en", "en {{ alert.number }}"),
        ]),
        ..MessageSettings::default()
    });
    let said = |language: Option<&str>| {
        t.word(&to("sms", SMS, language, "UTC"))
            .expect("renders")
            .map(|w| w.text)
    };
    assert_eq!(said(Some("pt-BR")).as_deref(), Some("pt 42"));
    assert_eq!(said(Some("it")).as_deref(), Some("de 42"));
    assert_eq!(said(None).as_deref(), Some("de 42"));
    // A kind without templates, and no built-ins: OnCall's text goes as it came.
    assert_eq!(
        t.word(&to("call", CALL, Some("de"), "UTC"))
            .expect("renders"),
        None
    );
    // Built-ins count per language: a reader's own language beats the backend's template.
    let t = texts(MessageSettings {
        templates: inline(&[("sms", "en", "custom {{ alert.number }}")]),
        ..MessageSettings::default()
    });
    let w = t
        .word(&to("sms", SMS, Some("es"), "UTC"))
        .expect("renders")
        .expect("worded");
    assert!(w.text.starts_with("Alerta #42"), "{}", w.text);
    let w = t
        .word(&to("sms", SMS, Some("ja"), "UTC"))
        .expect("renders")
        .expect("worded");
    assert_eq!(w.text, "custom 42");
}

#[test]
fn unknown_text_passes_through_the_builtin_texts() {
    let t = texts(MessageSettings::default());
    for language in builtin_languages() {
        let w = t
            .word(&to("sms", "Disk full on db-1", Some(language), "UTC"))
            .expect("renders")
            .expect("worded");
        assert_eq!(w.text, "Disk full on db-1");
    }
}

#[test]
fn schedule_and_heartbeat_texts_show_local_times() {
    let t = texts(MessageSettings::default());
    let mut n = to("schedule", "You are on call", Some("de"), "Europe/Berlin");
    n.payload = Some(serde_json::json!({
        "title": "On call: Ops", "schedule": "Ops", "shift_end_ms": AT,
    }));
    let w = t.word(&n).expect("renders").expect("worded");
    assert_eq!(w.text, "Bereitschaft für Ops bis 01.12.2025 15:00 CET.");
    assert_eq!(w.title.as_deref(), Some("Bereitschaft: Ops"));

    n.payload = Some(serde_json::json!({
        "schedule": "Ops", "reminder": true, "shift_start_ms": AT, "shift_end_ms": AT + 3_600_000,
    }));
    n.reader.language = Some("en".into());
    let w = t.word(&n).expect("renders").expect("worded");
    assert_eq!(
        w.text,
        "Your on-call shift for Ops starts 2025-12-01 15:00 CET (until 2025-12-01 16:00 CET)."
    );

    let mut n = to("heartbeat", "lost", Some("uk"), "Europe/Kyiv");
    n.payload = Some(serde_json::json!({
        "state": "silent", "integration": "OnCall Cloud Heartbeat x", "instance": "oncall.example",
        "last_beat_at_ms": AT,
    }));
    let w = t.word(&n).expect("renders").expect("worded");
    assert_eq!(
        w.text,
        "OnCall oncall.example: немає heartbeat з 01.12.2025 16:00 EET."
    );
    assert!(sms::segments(&w.text) == 1, "{}", w.text);
}

#[test]
fn odd_details_send_oncalls_text_rather_than_fail_the_page() {
    let t = texts(MessageSettings::default());
    let mut n = to("schedule", "You are on call for Ops", Some("de"), "UTC");
    // A schedule text whose details lack the schedule's name.
    n.payload = Some(serde_json::json!({"shift_end_ms": AT}));
    assert_eq!(t.word(&n).expect("no error"), None);
    // An operator's own template that fails is an error.
    let t = texts(MessageSettings {
        templates: inline(&[("schedule", "de", "{{ details.schedule.name }}")]),
        ..MessageSettings::default()
    });
    assert!(t.word(&n).is_err());
}

#[test]
fn an_unknown_variable_is_named_with_its_line() {
    let settings = MessageSettings {
        templates: inline(&[("sms", "de", "Alarm\n#{{ alert.number }} {{ alert.titel }}")]),
        ..MessageSettings::default()
    };
    let err = Texts::new("gw", Some(&gateway()), &settings).expect_err("unknown variable");
    assert_eq!(
        err,
        "`plugin.messages.gw.templates.sms.de`, line 2: unknown variable `alert.titel`"
    );
    let settings = MessageSettings {
        titles: inline(&[("push", "en", "{{ usr.name }}")]),
        ..MessageSettings::default()
    };
    let err = Texts::new("gw", Some(&gateway()), &settings).expect_err("unknown variable");
    assert!(err.contains("unknown variable `usr.name`"), "{err}");
    // Free-form ones take any field.
    let settings = MessageSettings {
        templates: inline(&[("push", "en", "{{ details.anything }} {{ links.x }}")]),
        ..MessageSettings::default()
    };
    Texts::new("gw", Some(&gateway()), &settings).expect("details are free-form");
}

#[test]
fn a_template_file_that_does_not_compile_is_named() {
    let dir = std::env::temp_dir().join(format!("texts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("sms.de.j2");
    std::fs::write(&file, "ok\n{% if alert.title %}no end").expect("write");
    let mut table = BTreeMap::new();
    table.insert(
        "sms".to_string(),
        BTreeMap::from([(
            "de".to_string(),
            TemplateSource::File { file: file.clone() },
        )]),
    );
    let settings = MessageSettings {
        templates: table,
        ..MessageSettings::default()
    };
    let err = Texts::new("gw", Some(&gateway()), &settings).expect_err("syntax error");
    assert!(err.starts_with(&file.display().to_string()), "{err}");
    assert!(err.contains("line 2"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_builtin_template_uses_only_known_variables() {
    for kind in Kind::ALL {
        for language in builtin_languages() {
            let texts = Medium::ALL.map(|medium| builtin::text(medium, kind, language));
            for text in texts.into_iter().chain([builtin::title(kind, language)]) {
                let text = text.expect("built in");
                let mut env = template::plain_environment();
                template::add(&mut env, "t", &text).expect("compiles");
                let t = env.get_template("t").expect("added");
                variables::check(&env, &t, &text, "built-in").expect("known variables");
            }
        }
    }
}

#[test]
fn a_webhook_body_printing_only_oncalls_text_is_warned_about() {
    let mut plugin = crate::config::PluginSettings::default();
    let webhook = |body: &str| {
        BackendSettings::Webhook(WebhookSettings {
            url: "http://gw/send".into(),
            body: Some(body.into()),
            ..WebhookSettings::default()
        })
    };
    plugin
        .backends
        .insert("old".into(), webhook(r#"{"t": {{ message }}}"#));
    plugin
        .backends
        .insert("new".into(), webhook(r#"{"t": {{ text }}}"#));
    plugin
        .backends
        .insert("plain".into(), webhook(r#"{"t": {{ message }}}"#));
    plugin
        .messages
        .insert("old".into(), MessageSettings::default());
    plugin
        .messages
        .insert("new".into(), MessageSettings::default());
    let warnings = crate::notify::backends::config_warnings(&plugin);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("backend `old`: "), "{warnings:?}");
}

#[test]
fn builtin_functions_and_loop_variables_are_not_unknown() {
    let settings = MessageSettings {
        templates: inline(&[(
            "sms",
            "en",
            "{% for i in range(2) %}{{ loop.index }}{{ i }}{% endfor %}{% set ns = namespace(n=1) %}{{ ns.n }}{{ dict(a=1).a }}",
        )]),
        ..MessageSettings::default()
    };
    let t = Texts::new("gw", Some(&gateway()), &settings).expect("compiles and checks");
    let w = t
        .word(&to("sms", SMS, None, "UTC"))
        .expect("renders")
        .expect("worded");
    assert_eq!(w.text, "102111");
}
