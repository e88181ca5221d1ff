//! `check-config` and `config`: configuration errors named, secrets hidden.

use std::process::Output;

use super::{config_dir, relay_in, relay_in_without_token};
use crate::helpers::ok;

/// `check-config` on `yaml`, written to a file in a fresh folder, with no token in the
/// environment.
fn check_config(yaml: &str) -> Output {
    let (dir, config) = config_dir(yaml);
    relay_in_without_token(dir.path(), ["--config", &config, "check-config"])
}

#[test]
fn unknown_option_is_a_startup_error_naming_it() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = dir.path().join("c.yml");
    std::fs::write(&cfg, "app:\n  auth_token: x\n  portt: ':1'\n").expect("write");
    let out = relay_in(
        dir.path(),
        ["--config", cfg.to_str().expect("path"), "serve"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("portt"), "{err}");
}

#[test]
fn check_config_reports_a_broken_template_and_passes_a_good_file() {
    let out = check_config(
        "app:\n  auth_token: x\nplugin:\n  backends:\n    gw:\n      type: webhook\n      url: http://127.0.0.1:9/\n      body: '{{ phone '\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gw") && err.contains("body"), "{err}");
    let text = ok(&check_config(
        "app:\n  auth_token: x\nplugin:\n  backend: gw\n  backends:\n    gw:\n      type: webhook\n      url: http://127.0.0.1:9/\n  routes:\n    sms:\n      - backend: gw\n",
    ));
    assert!(
        text.contains("configuration OK") && text.contains("route sms: gw"),
        "{text}"
    );
}

#[test]
fn check_config_warns_about_a_shell_running_a_templated_script() {
    let run = |args: &str| {
        let out = check_config(&format!(
            "app:\n  auth_token: x\nplugin:\n  backend: script\n  backends:\n    script:\n      type: exec\n      command: sh\n      args: {args}\n"
        ));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let unsafe_form = run(r#"["-c", "send --text '{{ message }}'"]"#);
    assert!(
        unsafe_form.contains("warning: backend `script`: `sh` runs a templated script"),
        "{unsafe_form}"
    );
    let safe_form = run(r#"["-c", "send --text \"$1\"", "sh", "{{ message }}"]"#);
    assert!(safe_form.contains("configuration OK"), "{safe_form}");
    assert!(!safe_form.contains("templated script"), "{safe_form}");
}

#[test]
fn config_command_hides_every_secret() {
    let (dir, config) = config_dir(
        "app:\n  auth_token: tok-AAAA\ndb:\n  password: pw-BBBB\n  url: 'postgres://u:pw-CCCC@db/x'\nplugin:\n  backends:\n    gw:\n      type: webhook\n      url: 'https://gw.example/send?key=key-DDDD'\n      headers:\n        X-Api-Key: hdr-EEEE\n      bearer_token: tok-FFFF\n      signing_secret: sec-GGGG\n",
    );
    let out = relay_in(dir.path(), ["--config", &config, "config"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for secret in ["AAAA", "BBBB", "CCCC", "DDDD", "EEEE", "FFFF", "GGGG"] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    assert!(text.contains("https://gw.example/***"), "{text}");
    assert!(text.contains("postgres://db/***"), "{text}");
}

#[test]
fn check_config_fails_for_whatever_stops_serve() {
    for (yaml, reason) in [
        ("app:\n  log_level: info\n", "app.auth_token"),
        (
            "app:\n  auth_token: x\n  log_level: loud\n",
            "app.log_level",
        ),
        (
            "app:\n  auth_token: x\ngrafana:\n  oncall:\n    schedules:\n      team:\n        ical_url: /ical\n        transport: carrier-pigeon\n",
            "team",
        ),
        (
            "app:\n  auth_token: x\ngrafana:\n  oncall:\n    schedules:\n      team:\n        ical_url: /ical\n        transport: callback\n",
            "callback_url",
        ),
    ] {
        let out = check_config(yaml);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml}: {stdout}");
        assert!(!stdout.contains("configuration OK"), "{yaml}: {stdout}");
        assert!(stderr.contains(reason), "{yaml}: {stderr}");
    }
    let out = check_config("app:\n  allow_any_token: true\n");
    assert!(
        out.status.success(),
        "allow_any_token starts without a token"
    );
}

#[test]
fn check_config_names_the_file_line_and_variable_of_a_bad_message_template() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("sms.de.j2");
    std::fs::write(&file, "Alarm #{{ alert.number }}\n{{ alert.titel }}\n").expect("write");
    let yaml = format!(
        "app:\n  auth_token: x\nplugin:\n  backend: gw\n  backends:\n    gw:\n      type: webhook\n      url: http://127.0.0.1:9/\n  messages:\n    gw:\n      language: de\n      templates:\n        sms:\n          de:\n            file: {}\n",
        file.display()
    );
    let out = check_config(&yaml);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}, line 2: unknown variable `alert.titel`",
            file.display()
        )),
        "{err}"
    );
    std::fs::write(&file, "Alarm #{{ alert.number }}\n{{ alert.title }}\n").expect("write");
    let text = ok(&check_config(&yaml));
    assert!(text.contains("messages gw: de"), "{text}");
}
