//! `templates render`: what a person would receive, and its SMS segment count.

use super::{config_dir, relay_in};
use crate::helpers::ok;

const SMS: &str = "Grafana OnCall: Alert group #2\"CPU high\" from stack: \"prod\", integration: Grafana Alerting, alerts registered: 1.";

#[test]
fn templates_render_shows_the_text_and_its_segments() {
    let (dir, config) = config_dir(
        "app:\n  auth_token: x\nplugin:\n  backend: gw\n  backends:\n    gw:\n      type: webhook\n      url: http://127.0.0.1:9/\n  messages:\n    gw: {}\n",
    );
    let render = |lang: &str| {
        let out = relay_in(
            dir.path(),
            [
                "--config",
                &config,
                "templates",
                "render",
                "--backend",
                "gw",
                "--kind",
                "sms",
                "--lang",
                lang,
                "--tz",
                "Europe/Berlin",
                "--text",
                SMS,
            ],
        );
        ok(&out)
    };
    let de = render("de");
    assert!(
        de.contains("Alarm #2: CPU high (Grafana Alerting, Alarme: 1) "),
        "{de}"
    );
    assert!(de.contains("# 1 SMS segment (GSM-7, "), "{de}");
    let uk = render("uk");
    assert!(uk.contains("Алерт #2: CPU high"), "{uk}");
    assert!(uk.contains("# 1 SMS segment (UCS-2, "), "{uk}");
}
