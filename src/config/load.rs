//! Loading: built-in defaults, then the YAML file, then `ONCALL_RELAY_*` environment variables,
//! then command-line flags, layered with figment; errors name the option and where it came from.

use std::collections::BTreeMap;
use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Serialized};
use serde::Serialize;

use super::{ConfigError, DEFAULT_CONFIG_PATH, ENV_PREFIX, Settings};

impl From<figment::Error> for ConfigError {
    fn from(err: figment::Error) -> Self {
        // figment reports one error per bad key; name every one of them and where it came
        // from: the environment variable, or the option and its file.
        let parts: Vec<String> = err
            .into_iter()
            .map(|e| {
                let profile = e.profile.clone().unwrap_or_default();
                match &e.metadata {
                    Some(m) if m.name == ENV_SOURCE && !e.path.is_empty() => format!(
                        "environment variable `{}`: {}",
                        m.interpolate(&profile, &e.path),
                        e.kind
                    ),
                    meta => {
                        let key = if e.path.is_empty() {
                            String::new()
                        } else {
                            format!("option `{}`: ", e.path.join("."))
                        };
                        // A code location means nothing to an operator; a file does.
                        let source = meta
                            .as_ref()
                            .and_then(|m| match &m.source {
                                Some(figment::Source::File(path)) => {
                                    Some(format!(" [in {}]", path.display()))
                                }
                                _ if m.name == FLAGS_SOURCE => Some(format!(" [from {}]", m.name)),
                                _ => None,
                            })
                            .unwrap_or_default();
                        format!("{key}{}{source}", e.kind)
                    }
                }
            })
            .collect();
        ConfigError::Invalid(parts.join("; "))
    }
}

/// Provider name of environment variables in error messages.
const ENV_SOURCE: &str = "environment variable";
/// Provider name of command-line flags in error messages.
const FLAGS_SOURCE: &str = "command-line flags";

/// YAML through `yaml_serde` (figment's own YAML support uses an archived parser).
struct Yaml;

impl Format for Yaml {
    type Error = yaml_serde::Error;
    const NAME: &'static str = "YAML";

    fn from_str<T: serde::de::DeserializeOwned>(string: &str) -> Result<T, Self::Error> {
        yaml_serde::from_str(string)
    }
}

/// Overrides given as command-line flags: the highest layer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides(pub BTreeMap<String, serde_json::Value>);

impl Overrides {
    /// Sets `key` (dotted path) to `value` when the value is present.
    pub fn set(&mut self, key: &str, value: Option<impl Into<serde_json::Value>>) {
        if let Some(v) = value {
            self.0.insert(key.to_string(), v.into());
        }
    }

    fn nested(&self) -> serde_json::Value {
        let mut root = serde_json::Map::new();
        for (key, value) in &self.0 {
            let mut node = &mut root;
            let mut parts = key.split('.').peekable();
            while let Some(part) = parts.next() {
                if parts.peek().is_none() {
                    node.insert(part.to_string(), value.clone());
                } else {
                    let entry = node
                        .entry(part.to_string())
                        .or_insert_with(|| serde_json::Value::Object(Default::default()));
                    if !entry.is_object() {
                        *entry = serde_json::Value::Object(Default::default());
                    }
                    match entry {
                        serde_json::Value::Object(map) => node = map,
                        _ => break,
                    }
                }
            }
        }
        serde_json::Value::Object(root)
    }
}

impl Settings {
    /// Loads defaults, then the YAML file, then the environment, then `overrides`.
    ///
    /// `path` is the file named by `--config`; it must exist. Without it, the default
    /// path is read when present and skipped otherwise.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigError> {
        Self::load_from_env(path, overrides, env_vars())
    }

    /// Same as [`Settings::load`] with an explicit environment (for tests).
    pub fn load_from_env(
        path: Option<&Path>,
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        match path {
            Some(p) if !p.exists() => return Err(ConfigError::MissingFile(p.to_path_buf())),
            Some(p) => fig = fig.merge(Yaml::file_exact(p)),
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                if default.exists() {
                    fig = fig.merge(Yaml::file_exact(default));
                }
            }
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        // The original read only AUTH_TOKEN; keep it working below the documented names.
        let legacy_token = env
            .iter()
            .find(|(k, _)| k == "AUTH_TOKEN")
            .map(|(_, v)| v.clone());
        let known: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| env_path(k).is_some_and(|p| names_an_option(&p)))
            .collect();
        fig = fig.merge(EnvProvider::new(legacy_token, known));
        fig = fig.merge(FlagsProvider(overrides.nested()));
        let settings: Settings = fig.extract()?;
        settings.validate()?;
        Ok(settings)
    }
}

/// Environment provider: `ONCALL_RELAY_APP__PORT` → `app.port`. Built by hand rather than
/// with figment's `Env` so that tests can pass an explicit environment, and so that an error
/// names the variable that holds the bad value.
struct EnvProvider {
    values: Overrides,
    /// Option path → the variable that set it.
    names: std::sync::Arc<BTreeMap<String, String>>,
}

impl EnvProvider {
    /// `legacy_token` is the original's `AUTH_TOKEN`; `vars` are `ONCALL_RELAY_*` variables
    /// that name an option.
    fn new(legacy_token: Option<String>, vars: Vec<(String, String)>) -> EnvProvider {
        let mut values = Overrides::default();
        let mut names = BTreeMap::new();
        if let Some(token) = legacy_token {
            values.0.insert("app.auth_token".into(), token.into());
            names.insert("app.auth_token".to_string(), "AUTH_TOKEN".to_string());
        }
        for (key, value) in vars {
            let Some(path) = env_path(&key) else {
                continue;
            };
            values.0.insert(path.clone(), env_value(value));
            names.insert(path, key);
        }
        EnvProvider {
            values,
            names: std::sync::Arc::new(names),
        }
    }
}

impl figment::Provider for EnvProvider {
    fn metadata(&self) -> figment::Metadata {
        let names = self.names.clone();
        figment::Metadata::named(ENV_SOURCE).interpolater(
            move |_: &figment::Profile, keys: &[&str]| {
                // The error may sit below the variable's own path (a YAML map in one variable).
                let mut path = keys.join(".");
                loop {
                    if let Some(name) = names.get(&path) {
                        return name.clone();
                    }
                    match path.rsplit_once('.') {
                        Some((head, _)) => path = head.to_string(),
                        None => {
                            return format!("{ENV_PREFIX}{}", keys.join("__").to_ascii_uppercase());
                        }
                    }
                }
            },
        )
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Serialized::defaults(self.values.nested()).data()
    }
}

/// Command-line flags, named as such in error messages.
struct FlagsProvider(serde_json::Value);

impl figment::Provider for FlagsProvider {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(FLAGS_SOURCE)
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Serialized::defaults(&self.0).data()
    }
}

/// The option path an `ONCALL_RELAY_*` variable spells, if it has the prefix.
fn env_path(key: &str) -> Option<String> {
    key.strip_prefix(ENV_PREFIX)
        .map(|rest| rest.to_ascii_lowercase().replace("__", "."))
}

/// An environment value as configuration: lists and maps read as YAML; numbers and booleans
/// only when they read back identically, so that a token like `0123` keeps its leading zero.
fn env_value(value: String) -> serde_json::Value {
    match yaml_serde::from_str::<serde_json::Value>(&value) {
        Ok(v @ (serde_json::Value::Array(_) | serde_json::Value::Object(_))) => v,
        Ok(v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_)))
            if serde_json::to_string(&v).ok().as_deref() == Some(value.trim()) =>
        {
            v
        }
        _ => serde_json::Value::String(value),
    }
}

/// Whether a dotted path names an option (or lies inside a map of named entries such as
/// `plugin.backends.<name>`).
fn names_an_option(path: &str) -> bool {
    let Ok(mut node) = serde_json::to_value(Settings::default()) else {
        return true;
    };
    if path.is_empty() {
        return false;
    }
    for part in path.split('.') {
        match node {
            // An empty map in the defaults holds entries the operator names.
            serde_json::Value::Object(ref map) if map.is_empty() => return true,
            serde_json::Value::Object(mut map) => match map.remove(part) {
                Some(child) => node = child,
                None => return false,
            },
            _ => return false,
        }
    }
    true
}

/// The process environment, skipping variables that are not valid UTF-8 (none of ours can be).
pub fn env_vars() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The `ONCALL_RELAY_*` variables in `env` that name no option. They are ignored rather
/// than refused: Kubernetes sets `ONCALL_RELAY_PORT`, `ONCALL_RELAY_SERVICE_HOST` and more
/// for a Service named `oncall-relay`.
pub fn unknown_env_vars(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let mut names: Vec<String> = env
        .into_iter()
        .filter(|(k, _)| env_path(k).is_some_and(|p| !names_an_option(&p)))
        .map(|(k, _)| k)
        .collect();
    names.sort();
    names
}

/// Loads `yaml` as the configuration file with the environment `env` (for tests).
#[cfg(test)]
pub(super) fn load_yaml(yaml: &str, env: Vec<(&str, &str)>) -> Result<Settings, ConfigError> {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(yaml.as_bytes()).expect("write");
    Settings::load_from_env(
        Some(file.path()),
        &Overrides::default(),
        env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{Driver, Secret};

    #[test]
    fn original_yaml_is_accepted() {
        let s = load_yaml(
            "debug: false\napp:\n  port: 127.0.0.1:9999\n  auth_token: abc\n  write_timeout: 30s\ndb:\n  driver: postgres\n  addr: db\n  pool:\n    max_open_connections: 5\n    max_life_time: 1m\ngrafana:\n  url: http://g\n  oncall:\n    url: http://o\n    schedules:\n      team:\n        name: Team\n        notify: callback\n        ical_url: /api/ical\n        callback_url: http://cb\nplugin:\n  backend: stdout\n",
            vec![],
        )
        .expect("loads");
        assert_eq!(s.app.port.socket_addr().expect("addr"), "127.0.0.1:9999");
        assert_eq!(s.app.auth_token.0, vec![Secret("abc".into())]);
        assert_eq!(s.app.write_timeout, Duration::from_secs(30));
        assert_eq!(s.db.driver, Driver::Postgres);
        assert_eq!(s.db.pool.max_open_connections, 5);
        assert_eq!(s.db.pool.max_life_time, Duration::from_secs(60));
        assert_eq!(
            s.grafana.oncall.schedules["team"].notify.as_deref(),
            Some("callback")
        );
    }

    #[test]
    fn unknown_option_is_named() {
        let err = load_yaml("app:\n  prot: ':1'\n", vec![]).expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("prot"), "{text}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = load_yaml("db:\n  port: lots\n", vec![]).expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("db.port"), "{text}");
    }

    #[test]
    fn environment_beats_file_and_flags_beat_environment() {
        let s = load_yaml(
            "app:\n  log_level: info\n  port: ':1111'\n",
            vec![
                ("ONCALL_RELAY_APP__LOG_LEVEL", "warn"),
                ("ONCALL_RELAY_APP__PORT", "2222"),
                ("ONCALL_RELAY_APP__AUTH_TOKEN", "12345"),
            ],
        )
        .expect("loads");
        assert_eq!(s.app.log_level, "warn");
        assert_eq!(s.app.port.socket_addr().expect("addr"), "0.0.0.0:2222");
        assert_eq!(s.app.auth_token.0, vec![Secret("12345".into())]);

        let mut o = Overrides::default();
        o.set("app.log_level", Some("error"));
        let s = Settings::load_from_env(
            None,
            &o,
            vec![(
                "ONCALL_RELAY_APP__LOG_LEVEL".to_string(),
                "warn".to_string(),
            )],
        )
        .expect("loads");
        assert_eq!(s.app.log_level, "error");
    }

    #[test]
    fn kubernetes_service_variables_are_ignored_and_listed() {
        let env = vec![
            ("ONCALL_RELAY_PORT", "tcp://10.0.0.1:8880"),
            ("ONCALL_RELAY_SERVICE_HOST", "10.0.0.1"),
            ("ONCALL_RELAY_SERVICE_PORT", "8880"),
            ("ONCALL_RELAY_PORT_8880_TCP_ADDR", "10.0.0.1"),
            ("ONCALL_RELAY_APP__PORT", ":9999"),
            ("ONCALL_RELAY_PLUGIN__BACKENDS__GW__TYPE", "stdout"),
        ];
        let s = load_yaml("{}", env.clone()).expect("unknown variables do not stop the service");
        assert_eq!(s.app.port.0, ":9999");
        assert!(s.plugin.backends.contains_key("gw"));
        let unknown =
            unknown_env_vars(env.into_iter().map(|(k, v)| (k.to_string(), v.to_string())));
        assert_eq!(
            unknown,
            vec![
                "ONCALL_RELAY_PORT",
                "ONCALL_RELAY_PORT_8880_TCP_ADDR",
                "ONCALL_RELAY_SERVICE_HOST",
                "ONCALL_RELAY_SERVICE_PORT",
            ]
        );
    }

    #[test]
    fn bad_environment_value_names_the_variable() {
        for (var, value) in [
            ("ONCALL_RELAY_APP__PORT", "99999"),
            ("ONCALL_RELAY_DB__PORT", "lots"),
            ("ONCALL_RELAY_QUEUE__LEASE", "soon"),
        ] {
            let err = load_yaml("{}", vec![(var, value)]).expect_err(var);
            let text = err.to_string();
            assert!(
                text.contains(&format!("environment variable `{var}`")),
                "{text}"
            );
            assert!(!text.contains(".rs"), "no source line: {text}");
            assert!(!text.contains("untagged"), "{text}");
        }
    }

    #[test]
    fn out_of_range_port_names_the_option() {
        for yaml in [
            "app:\n  port: 99999\n",
            "app:\n  port: ':99999'\n",
            "app:\n  port: [1]\n",
        ] {
            let err = load_yaml(yaml, vec![]).expect_err(yaml);
            let text = err.to_string();
            assert!(text.contains("app.port"), "{text}");
            assert!(!text.contains("untagged"), "{text}");
        }
        let err = load_yaml("queue:\n  lease: -5\n", vec![]).expect_err("negative");
        assert!(err.to_string().contains("queue.lease"), "{err}");
        assert!(!err.to_string().contains("untagged"), "{err}");
        let err = load_yaml("app:\n  auth_token: {a: 1}\n", vec![]).expect_err("map token");
        assert!(err.to_string().contains("app.auth_token"), "{err}");
        assert!(!err.to_string().contains("untagged"), "{err}");
    }

    #[test]
    fn legacy_auth_token_variable_works() {
        let s = load_yaml("{}", vec![("AUTH_TOKEN", "legacy")]).expect("loads");
        assert_eq!(s.app.auth_token.0, vec![Secret("legacy".into())]);
        let s = load_yaml(
            "{}",
            vec![
                ("AUTH_TOKEN", "legacy"),
                ("ONCALL_RELAY_APP__AUTH_TOKEN", "new,second"),
            ],
        )
        .expect("loads");
        assert_eq!(
            s.app.auth_token.0,
            vec![Secret("new".into()), Secret("second".into())]
        );
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = Settings::load_from_env(
            Some(Path::new("/nonexistent/relay.yml")),
            &Overrides::default(),
            Vec::new(),
        )
        .expect_err("missing");
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }
}
