//! `serve`: what stops it, and what it ignores.

use super::{command_in, relay_in_without_token};
use crate::helpers::{TOKEN, spawn_serve, str_of};

#[test]
fn serve_refuses_to_start_without_a_token() {
    let dir = tempfile::tempdir().expect("dir");
    let out = relay_in_without_token(dir.path(), ["serve", "--port", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("app.auth_token") && err.contains("allow_any_token"),
        "{err}"
    );
}

/// Kubernetes sets these for a Service named `oncall-relay`; none of them is an option.
const SERVICE_LINK_VARS: [(&str, &str); 7] = [
    ("ONCALL_RELAY_PORT", "tcp://10.96.0.17:8880"),
    ("ONCALL_RELAY_SERVICE_HOST", "10.96.0.17"),
    ("ONCALL_RELAY_SERVICE_PORT", "8880"),
    ("ONCALL_RELAY_SERVICE_PORT_HTTP", "8880"),
    ("ONCALL_RELAY_PORT_8880_TCP", "tcp://10.96.0.17:8880"),
    ("ONCALL_RELAY_PORT_8880_TCP_ADDR", "10.96.0.17"),
    ("ONCALL_RELAY_PORT_8880_TCP_PROTO", "tcp"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_with_kubernetes_service_variables_set() {
    let dir = tempfile::tempdir().expect("dir");
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_oncall-relay"));
    cmd.current_dir(dir.path())
        .env_remove("AUTH_TOKEN")
        .envs(SERVICE_LINK_VARS)
        .env("ONCALL_RELAY_APP__AUTH_TOKEN", TOKEN)
        .env("ONCALL_RELAY_APP__PORT", "127.0.0.1:0")
        .env("ONCALL_RELAY_APP__LOG_LEVEL", "info")
        .env("ONCALL_RELAY_DB__PATH", dir.path().join("relay.db"));
    let (mut child, mut lines) = spawn_serve(&mut cmd, std::process::Stdio::piped());
    let mut log = Vec::new();
    let addr = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["message"] == "oncall-relay listening" {
                return Some(str_of(&v["address"]).to_string());
            }
            log.push(line);
        }
        None
    })
    .await
    .expect("relay starts in time");
    let Some(addr) = addr else {
        let _ = child.kill().await;
        let out = child.wait_with_output().await.expect("output");
        panic!(
            "relay exited before listening: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    oncall_relay::install_crypto_provider();
    let resp = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(resp.status().as_u16(), 200);
    let warning = log
        .iter()
        .find(|l| l.contains("name no option"))
        .unwrap_or_else(|| panic!("one warning names the ignored variables: {log:?}"));
    for (name, value) in SERVICE_LINK_VARS {
        assert!(warning.contains(name), "{name} named: {warning}");
        if value.contains("10.96") {
            assert!(!warning.contains(value), "values never logged: {warning}");
        }
    }
    assert_eq!(
        log.iter().filter(|l| l.contains("name no option")).count(),
        1,
        "warned once"
    );
    let _ = child.kill().await;
}

#[test]
fn a_known_option_with_a_bad_value_still_stops_serve_naming_the_variable() {
    let dir = tempfile::tempdir().expect("dir");
    let out = command_in(dir.path())
        .envs(SERVICE_LINK_VARS)
        .env("ONCALL_RELAY_APP__AUTH_TOKEN", TOKEN)
        .env("ONCALL_RELAY_APP__PORT", "99999")
        .arg("serve")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("environment variable `ONCALL_RELAY_APP__PORT`"),
        "{err}"
    );
    assert!(!err.contains("untagged") && !err.contains(".rs:"), "{err}");
}
