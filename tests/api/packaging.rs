//! The shipped deployment files agree with the service: the ConfigMap and Secret make a valid
//! configuration, and the probes point at real routes. (`scripts/lint-deploy` lints them.)

use std::path::Path;

fn yaml(path: &str) -> serde_json::Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{path}: {e}"));
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn kubernetes_configmap_and_secret_make_a_valid_configuration() {
    let config = yaml("deploy/kubernetes/configmap.yaml");
    let secret = yaml("deploy/kubernetes/secret.yaml");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("config.yml");
    std::fs::write(
        &file,
        config["data"]["config.yml"].as_str().expect("config.yml"),
    )
    .expect("write");
    let env: Vec<(String, String)> = secret["stringData"]
        .as_object()
        .expect("stringData")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_string()))
        .collect();
    let settings = oncall_relay::config::Settings::load_from_env(
        Some(&file),
        &oncall_relay::config::Overrides::default(),
        env,
    )
    .expect("the shipped configuration loads");
    assert_eq!(settings.db.driver, oncall_relay::config::Driver::Postgres);
    assert_eq!(settings.app.auth_token.0.len(), 1);
}

#[test]
fn kubernetes_deployment_runs_two_probed_non_root_replicas() {
    let d = yaml("deploy/kubernetes/deployment.yaml");
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["enableServiceLinks"], false,
        "no ONCALL_RELAY_* service link variables"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], "oncall-relay");
    // The grace period outlasts the default lease, so a draining replica can finish.
    assert!(
        pod["terminationGracePeriodSeconds"]
            .as_i64()
            .expect("grace")
            > 60
    );
}

#[test]
fn docker_image_defaults_sit_below_a_mounted_config_file() {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
            .expect("Dockerfile");
    // Joined continuation lines: `ENV A=1 \` newline `B=2` is one instruction.
    let instructions = dockerfile.replace("\\\n", " ");
    for line in instructions.lines() {
        let line = line.trim();
        if line.to_ascii_uppercase().starts_with("ENV ") {
            assert!(
                !line.contains("ONCALL_RELAY_"),
                "an image ENV beats the mounted config.yml: {line}"
            );
        }
    }
    assert!(
        dockerfile.contains("COPY deploy/docker/config.yml /etc/oncall-relay/config.yml"),
        "the image ships its defaults as a config file"
    );
    assert!(
        dockerfile.contains(r#"CMD ["--config", "/etc/oncall-relay/config.yml", "serve"]"#),
        "and reads it"
    );
    let image = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/docker/config.yml");
    let s = oncall_relay::config::Settings::load_from_env(
        Some(&image),
        &oncall_relay::config::Overrides::default(),
        Vec::new(),
    )
    .expect("the image's config loads");
    assert_eq!(s.app.port.0, ":8880");
    assert_eq!(s.app.log_level, "info");
    assert_eq!(s.db.path, "/data/oncall-relay.db");
}

#[test]
fn kustomization_creates_the_namespace_it_deploys_into() {
    let k = yaml("deploy/kubernetes/kustomization.yaml");
    let namespace = k["namespace"].as_str().expect("namespace");
    let resources: Vec<&str> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    let created = resources.iter().any(|r| {
        let doc = yaml(&format!("deploy/kubernetes/{r}"));
        doc["kind"] == "Namespace" && doc["metadata"]["name"] == namespace
    });
    assert!(created, "no Namespace `{namespace}` among {resources:?}");
}

#[test]
fn lint_deploy_works_offline_and_its_systemd_check_can_fail() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(root.join("scripts/lint-deploy")).expect("script");
    assert!(!script.contains("pip install"), "nothing is installed");
    assert!(!script.contains("|| true"), "no check is silenced");
    let has_systemd = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_systemd {
        eprintln!("systemd-analyze is not installed: skipping the unit checks");
        return;
    }
    let good = std::process::Command::new(root.join("scripts/lint-deploy"))
        .output()
        .expect("run");
    assert!(
        good.status.success(),
        "{}{}",
        String::from_utf8_lossy(&good.stdout),
        String::from_utf8_lossy(&good.stderr)
    );
    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("oncall-relay.service");
    let unit = std::fs::read_to_string(root.join("deploy/systemd/oncall-relay.service"))
        .expect("unit")
        .replace("[Service]\n", "[Service]\nRestartt=always\n");
    std::fs::write(&bad, unit).expect("write");
    let out = std::process::Command::new(root.join("scripts/lint-deploy"))
        .env("SYSTEMD_UNIT", &bad)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a broken unit fails: {text}");
    assert!(text.contains("Restartt"), "{text}");
}
