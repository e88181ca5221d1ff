//! Validation: what types alone cannot check (listen address, prefix, backend names, routes,
//! tokens, timeouts against the queue lease), in one place for every section.

use super::{ConfigError, ROUTE_KINDS, Settings};

impl Settings {
    /// Checks what types alone cannot: listen address, prefix, backend names, timeouts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.app.port.socket_addr()?;
        let prefix = &self.app.path_prefix;
        if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.trim_matches('/').is_empty()) {
            return Err(ConfigError::Invalid(format!(
                "option `app.path_prefix`: `{prefix}` must start with `/` and name a path, e.g. `/oncall`"
            )));
        }
        // The heartbeat link (hostname + ~70 characters) must fit OnCall's 200-character column.
        if self.app.hostname.trim().len() > 120 {
            return Err(ConfigError::Invalid(
                "option `app.hostname`: longer than 120 characters; OnCall stores links built from it in 200".into(),
            ));
        }
        self.console.validate()?;
        for (option, name) in [
            ("plugin.backend", &self.plugin.backend),
            ("push.backend", &self.push.backend),
            ("push.fallback_backend", &self.push.fallback_backend),
            ("heartbeat.backend", &self.heartbeat.backend),
        ] {
            if !name.is_empty() && name != "stdout" && !self.plugin.backends.contains_key(name) {
                return Err(ConfigError::Invalid(format!(
                    "option `{option}`: no backend named `{name}` under `plugin.backends`"
                )));
            }
        }
        if self.plugin.backend.is_empty() {
            return Err(ConfigError::Invalid(
                "option `plugin.backend`: must name a backend (`stdout` by default)".into(),
            ));
        }
        for (kind, steps) in &self.plugin.routes {
            if !ROUTE_KINDS.contains(&kind.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "option `plugin.routes.{kind}`: routes are declared for {}",
                    ROUTE_KINDS.join(", ")
                )));
            }
            for (i, step) in steps.iter().enumerate() {
                if step.backend != "stdout" && !self.plugin.backends.contains_key(&step.backend) {
                    return Err(ConfigError::Invalid(format!(
                        "option `plugin.routes.{kind}[{i}].backend`: no backend named `{}` under `plugin.backends`",
                        step.backend
                    )));
                }
                for role in &step.roles {
                    if crate::roles::Role::parse(role).is_err() {
                        return Err(ConfigError::Invalid(format!(
                            "option `plugin.routes.{kind}[{i}].roles`: `{role}` is not admin, editor, viewer or none"
                        )));
                    }
                }
                if step.attempts == Some(0) {
                    return Err(ConfigError::Invalid(format!(
                        "option `plugin.routes.{kind}[{i}].attempts`: must be at least 1"
                    )));
                }
                if step.require_answer {
                    self.check_answer_step(kind, i, &step.backend)?;
                }
                if step.answer_timeout.is_some_and(|t| t.is_zero()) {
                    return Err(ConfigError::Invalid(format!(
                        "option `plugin.routes.{kind}[{i}].answer_timeout`: must be more than 0"
                    )));
                }
            }
        }
        if self
            .app
            .admin_token
            .0
            .iter()
            .any(|a| self.app.auth_token.0.contains(a))
        {
            return Err(ConfigError::Invalid(
                "option `app.admin_token`: must differ from every `app.auth_token` (OnCall's token must not administer the relay)".into(),
            ));
        }
        if self
            .app
            .metrics_token
            .0
            .iter()
            .any(|m| self.app.auth_token.0.contains(m) || self.app.admin_token.0.contains(m))
        {
            return Err(ConfigError::Invalid(
                "option `app.metrics_token`: must differ from every `app.auth_token` and `app.admin_token` (a scraper's configuration must not hold a token that places calls)".into(),
            ));
        }
        if self.app.metrics_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "option `app.metrics_interval`: must be more than 0".into(),
            ));
        }
        if self.heartbeat.timeout.is_zero() || self.heartbeat.check_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "options `heartbeat.timeout` and `heartbeat.check_interval` must be more than 0"
                    .into(),
            ));
        }
        for (name, backend) in &self.plugin.backends {
            if backend.timeout().is_some_and(|t| t >= self.queue.lease) {
                return Err(ConfigError::Invalid(format!(
                    "option `plugin.backends.{name}.timeout`: must be shorter than `queue.lease` ({}s), or a slow delivery could be repeated",
                    self.queue.lease.as_secs()
                )));
            }
        }
        if self.queue.batch_size == 0 || self.queue.concurrency == 0 || self.queue.writers == 0 {
            return Err(ConfigError::Invalid(
                "options `queue.batch_size`, `queue.concurrency` and `queue.writers` must be at least 1"
                    .into(),
            ));
        }
        for name in self.queue.backend_limits.keys() {
            if name != "stdout" && !self.plugin.backends.contains_key(name) {
                return Err(ConfigError::Invalid(format!(
                    "option `queue.backend_limits.{name}`: no backend named `{name}` under `plugin.backends`"
                )));
            }
        }
        if self.queue.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "option `queue.max_attempts`: must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// `require_answer` needs a backend that reports whether a call was answered. (Without
    /// `app.hostname` it cannot report either; start-up warns about that rather than refusing,
    /// see `notify::answer::warnings`.)
    fn check_answer_step(&self, kind: &str, i: usize, backend: &str) -> Result<(), ConfigError> {
        match self.plugin.backends.get(backend) {
            Some(super::BackendSettings::Twilio(_)) => Ok(()),
            Some(super::BackendSettings::Sip(s)) if s.app.is_some() => Ok(()),
            _ => Err(ConfigError::Invalid(format!(
                "option `plugin.routes.{kind}[{i}].require_answer`: backend `{backend}` cannot tell whether a call was answered (only `twilio` backends and `sip` backends with `app` can)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::load::load_yaml;
    use super::*;
    use crate::config::{BackendSettings, Secret, Tokens};

    #[test]
    fn backend_settings_are_checked() {
        let err = load_yaml("plugin:\n  backend: gw\n", vec![]).expect_err("unknown backend");
        assert!(err.to_string().contains("plugin.backend"), "{err}");
        let err = load_yaml(
            "plugin:\n  backend: gw\n  backends:\n    gw:\n      type: webhook\n      url: http://x\n      colour: red\n",
            vec![],
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("colour"), "{err}");
        let s = load_yaml(
            "plugin:\n  backend: gw\n  backends:\n    gw:\n      type: webhook\n      url: http://x\n      timeout: 2s\n",
            vec![],
        )
        .expect("loads");
        assert!(matches!(
            s.plugin.backends["gw"],
            BackendSettings::Webhook(_)
        ));
    }

    #[test]
    fn require_answer_needs_a_backend_that_reports_answers() {
        let twilio = "    tw:\n      type: twilio\n      account_sid: AC1\n      auth_token: t\n      from: '+15550001111'\n    \
                      pbx:\n      type: sip\n      url: http://pbx:8088\n      username: u\n      password: p\n    \
                      stasis:\n      type: sip\n      url: http://pbx:8088\n      username: u\n      password: p\n      app: oncall\n";
        let route = |backend: &str, more: &str| {
            format!(
                "plugin:\n  backends:\n{twilio}    gw:\n      type: webhook\n      url: http://x\n  routes:\n    call:\n      - backend: {backend}\n        require_answer: true\n{more}"
            )
        };
        for blind in ["gw", "pbx"] {
            let err = load_yaml(&route(blind, ""), vec![]).expect_err("cannot tell");
            assert!(
                err.to_string().contains("routes.call[0].require_answer"),
                "{blind}: {err}"
            );
        }
        // Asterisk reports on its event stream: no public hostname needed, no warning.
        let s = load_yaml(&route("stasis", ""), vec![]).expect("sip with app");
        assert!(crate::notify::answer::warnings(&s).is_empty());
        let err =
            load_yaml(&route("tw", "        answer_timeout: 0s\n"), vec![]).expect_err("zero wait");
        assert!(err.to_string().contains("answer_timeout"), "{err}");
        let s = load_yaml(&route("tw", "        answer_timeout: 90s\n"), vec![]).expect("loads");
        let step = &s.plugin.routes["call"][0];
        assert_eq!(step.answer_wait(), Some(Duration::from_secs(90)));
        // Loads without a public hostname, but start-up says the step cannot wait.
        assert_eq!(crate::notify::answer::warnings(&s).len(), 1);
        let mut s = s;
        s.app.hostname = "relay.example.com".into();
        assert!(crate::notify::answer::warnings(&s).is_empty());
    }

    #[test]
    fn push_and_heartbeat_backends_must_exist() {
        for yaml in [
            "push:\n  backend: nope\n",
            "push:\n  fallback_backend: nope\n",
            "heartbeat:\n  backend: nope\n",
            "heartbeat:\n  timeout: 0s\n",
        ] {
            let err = load_yaml(yaml, vec![]).expect_err(yaml);
            assert!(err.to_string().contains("option"), "{err}");
        }
        load_yaml("push:\n  fallback_backend: stdout\n", vec![]).expect("stdout always exists");
    }

    #[test]
    fn metrics_token_must_differ_from_the_api_tokens() {
        let mut s = Settings::default();
        s.app.auth_token = Tokens(vec![Secret("oncall".into())]);
        s.app.metrics_token = Tokens(vec![Secret("oncall".into())]);
        let err = s.validate().expect_err("same token").to_string();
        assert!(err.contains("app.metrics_token"), "{err}");
        s.app.metrics_token = Tokens(vec![Secret("scraper".into())]);
        assert!(s.validate().is_ok());
        s.app.metrics_interval = Duration::ZERO;
        let err = s.validate().expect_err("zero interval").to_string();
        assert!(err.contains("app.metrics_interval"), "{err}");
    }

    #[test]
    fn backend_timeouts_must_be_shorter_than_the_lease() {
        for backend in [
            "{type: webhook, url: 'http://x'}",
            "{type: ntfy}",
            "{type: rocketchat, url: 'http://x'}",
            "{type: sip, url: 'http://pbx', username: u, password: p}",
        ] {
            let yaml = format!("plugin:\n  backends:\n    gw: {backend}\nqueue:\n  lease: 10s\n");
            let err = load_yaml(&yaml, vec![]).expect_err(backend).to_string();
            assert!(err.contains("plugin.backends.gw.timeout"), "{err}");
            load_yaml(&yaml.replace("10s", "11s"), vec![]).expect(backend);
        }
    }
}
