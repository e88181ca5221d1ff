//! `config/config.example.yml` must load, and document every option under its full dotted path:
//! each section's options in that section, and the options of named entries (a backend of each
//! type, a schedule, a route step) in the commented-out examples below `backends: {}`,
//! `schedules: {}` and `routes: {}`.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Map, Value};

use super::{BackendSettings, Overrides, RouteSettings, ScheduleSettings, Settings};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/config.example.yml");

/// Backend types that need an example entry. `rocketchat` takes `mattermost`'s settings, and the
/// example says so next to the `mattermost` entry.
const BACKEND_TYPES: [&str; 10] = [
    "stdout",
    "webhook",
    "exec",
    "email",
    "twilio",
    "sip",
    "telegram",
    "slack",
    "mattermost",
    "ntfy",
];

/// The example with its commented-out entries turned into YAML.
///
/// Below a `key: {}` line, a comment indented like the key and followed by two or more spaces
/// (`  #   sms_gateway:`) is an example line; inside it, `# option: value` is an optional option
/// shown commented out. Other comments are prose and dropped.
fn documented(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    // Indent of the `key: {}` line whose examples follow, and that line's index in `out`.
    let mut block: Option<(usize, usize)> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let rest = line.trim_start();
        if let Some(comment) = rest.strip_prefix('#') {
            let Some((base, header)) = block.filter(|(base, _)| *base == indent) else {
                continue;
            };
            if !comment.starts_with("  ") {
                continue;
            }
            let content = comment.trim_start();
            let depth = indent + 1 + comment.len() - content.len();
            let content = match content.strip_prefix("# ") {
                Some(option) if is_option(option) => option,
                Some(_) => continue,
                None => content,
            };
            if let Some(open) = out[header].strip_suffix(" {}") {
                out[header] = open.to_string();
            }
            debug_assert!(depth > base);
            out.push(format!("{}{content}", " ".repeat(depth)));
        } else {
            block = rest
                .ends_with(": {}")
                .then_some((indent, out.len()))
                .or(block.filter(|_| rest.is_empty()));
            out.push(line.to_string());
        }
    }
    out.join("\n")
}

/// Whether a commented line is an option (`user: relay`) rather than prose.
fn is_option(line: &str) -> bool {
    line.split_once(':').is_some_and(|(key, _)| {
        !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    })
}

/// The value at a dotted path; `[]` steps into every element of a list.
fn at<'a>(root: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut nodes = vec![root];
    for part in path.split('.') {
        nodes = nodes
            .into_iter()
            .flat_map(|node| match (part, node) {
                ("[]", Value::Array(items)) => items.iter().collect::<Vec<_>>(),
                ("*", Value::Object(map)) => map.values().collect(),
                (_, Value::Object(map)) => map.get(part).into_iter().collect(),
                _ => Vec::new(),
            })
            .collect();
    }
    nodes
}

/// The options of one entry type, from a value of that type serialised.
fn option_names(value: Value) -> BTreeSet<String> {
    match value {
        Value::Object(map) => map.into_iter().map(|(k, _)| k).collect(),
        other => panic!("not an object: {other}"),
    }
}

/// Every dotted path to a leaf of the defaults (an empty map is a leaf: its entries are named
/// by the operator).
fn leaves(prefix: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, v, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// The options missing under `entries` (a path ending in `*` or `[]`): each of `options` must
/// be shown in at least one of the entries that `keep` selects.
fn missing_in_entries(
    doc: &Value,
    entries: &str,
    options: &BTreeSet<String>,
    keep: impl Fn(&Map<String, Value>) -> bool,
) -> Vec<String> {
    let shown: BTreeSet<&String> = at(doc, entries)
        .into_iter()
        .filter_map(Value::as_object)
        .filter(|entry| keep(entry))
        .flat_map(|entry| entry.keys())
        .collect();
    options
        .iter()
        .filter(|option| !shown.contains(option))
        .map(|option| format!("{entries}.{option}"))
        .collect()
}

/// All that the example text fails to document, as dotted paths.
fn undocumented(text: &str) -> Vec<String> {
    let doc: Value = yaml_serde::from_str(&documented(text)).expect("example config is YAML");
    let mut missing = Vec::new();

    let mut options = Vec::new();
    leaves(
        "",
        &serde_json::to_value(Settings::default()).expect("json"),
        &mut options,
    );
    missing.extend(options.into_iter().filter(|path| at(&doc, path).is_empty()));

    let schedule = option_names(serde_json::to_value(ScheduleSettings::default()).expect("json"));
    missing.extend(missing_in_entries(
        &doc,
        "grafana.oncall.schedules.*",
        &schedule,
        |_| true,
    ));

    // Every field set, so that none is skipped when serialised.
    let step = RouteSettings {
        backend: "stdout".into(),
        roles: vec!["admin".into()],
        users: vec!["alice@example.com".into()],
        important: Some(true),
        attempts: Some(1),
        require_answer: true,
        answer_timeout: Some(std::time::Duration::from_secs(60)),
        on_timeout: Some(super::plugin::OnTimeout::Retry),
    };
    let step = option_names(serde_json::to_value(step).expect("json"));
    missing.extend(missing_in_entries(
        &doc,
        "plugin.routes.*.[]",
        &step,
        |_| true,
    ));

    let entries: Map<String, Value> = at(&doc, "plugin.backends")
        .first()
        .and_then(|v| v.as_object())
        .cloned()
        .unwrap_or_default();
    for kind in BACKEND_TYPES {
        let of_kind = |entry: &Map<String, Value>| entry.get("type") == Some(&kind.into());
        // A documented entry read and written back holds every option of its type.
        let Some(options) = entries
            .values()
            .filter_map(Value::as_object)
            .find(|entry| of_kind(entry))
            .map(|entry| {
                let backend: BackendSettings = serde_json::from_value(Value::Object(entry.clone()))
                    .unwrap_or_else(|e| panic!("example `{kind}` backend: {e}"));
                option_names(serde_json::to_value(backend).expect("json"))
            })
        else {
            missing.push(format!("plugin.backends.<name> with type: {kind}"));
            continue;
        };
        missing.extend(
            missing_in_entries(&doc, "plugin.backends.*", &options, of_kind)
                .into_iter()
                .map(|path| format!("{path} (type: {kind})")),
        );
    }
    missing
}

#[test]
fn example_config_loads() {
    Settings::load_from_env(Some(Path::new(EXAMPLE)), &Overrides::default(), Vec::new())
        .expect("example config is valid");
}

#[test]
fn example_config_entries_are_valid_settings() {
    let text = std::fs::read_to_string(EXAMPLE).expect("example config");
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut file, documented(&text).as_bytes()).expect("write");
    Settings::load_from_env(Some(file.path()), &Overrides::default(), Vec::new())
        .expect("the example with its commented-out entries is valid");
}

#[test]
fn example_config_documents_every_option_under_its_path() {
    let text = std::fs::read_to_string(EXAMPLE).expect("example config");
    let missing = undocumented(&text);
    assert!(
        missing.is_empty(),
        "missing from config.example.yml: {missing:?}"
    );
}

#[test]
fn an_option_documented_in_another_section_does_not_count() {
    let text = std::fs::read_to_string(EXAMPLE).expect("example config");
    let cases = [
        // `timeout:` still stands under `db` and every backend.
        ("  timeout: 600s\n", "heartbeat.timeout"),
        (
            "  #     url_encode: true\n",
            "plugin.backends.*.url_encode (type: webhook)",
        ),
        (
            "  #     # token: xoxb-0123456789\n",
            "plugin.backends.*.token (type: slack)",
        ),
        (
            "    #     callback_url: ",
            "grafana.oncall.schedules.*.callback_url",
        ),
    ];
    for (line, path) in cases {
        let start = text
            .find(line)
            .unwrap_or_else(|| panic!("`{line}` in the example"));
        let end = text[start..]
            .find('\n')
            .map_or(text.len(), |n| start + n + 1);
        let without = format!("{}{}", &text[..start], &text[end..]);
        assert!(
            undocumented(&without).iter().any(|m| m == path),
            "removing `{}` must report `{path}`",
            line.trim()
        );
    }
}
