//! Which variables templates may use, so that a misspelt one fails `check-config` instead of
//! every delivery.

use minijinja::{Environment, Template};

/// Top-level variables of every template, and for the fixed-shape ones their fields (`None`:
/// any field, like a push's `details`).
const KNOWN: &[(&str, Option<&[&str]>)] = &[
    ("id", Some(&[])),
    ("kind", Some(&[])),
    ("message", Some(&[])),
    ("text", Some(&[])),
    ("phone", Some(&[])),
    ("phone_number", Some(&[])),
    ("email", Some(&[])),
    ("name", Some(&[])),
    ("user_id", Some(&[])),
    ("user", Some(&["id", "email", "name", "phone_number"])),
    ("attempt", Some(&[])),
    ("created_at", Some(&[])),
    ("created_at_ms", Some(&[])),
    ("title", Some(&[])),
    ("important", Some(&[])),
    ("details", None),
    ("contacts", None),
    ("links", None),
    (
        "alert_group",
        Some(&["id", "title", "state", "labels", "permalink"]),
    ),
    (
        "alert",
        Some(&[
            "shape",
            "number",
            "numbers",
            "more",
            "title",
            "integration",
            "more_integrations",
            "stack",
            "count",
            "groups",
        ]),
    ),
    ("language", Some(&[])),
    ("timezone", Some(&[])),
    ("medium", Some(&[])),
];

/// Fails on the first variable of `template` that templates never see (the environment's
/// functions, like `range`, are known), naming `origin` (a file or setting), the line and the
/// variable.
pub(super) fn check(
    env: &Environment<'_>,
    template: &Template<'_, '_>,
    source: &str,
    origin: &str,
) -> Result<(), String> {
    let globals: Vec<&str> = env.globals().map(|(name, _)| name).collect();
    let mut used: Vec<String> = template.undeclared_variables(true).into_iter().collect();
    used.sort();
    for path in used {
        let mut parts = path.split('.');
        let top = parts.next().unwrap_or_default();
        let field = parts.next();
        let known = match KNOWN.iter().find(|(name, _)| *name == top) {
            None => globals.contains(&top),
            Some((_, None)) => true,
            Some((_, Some(fields))) => field.is_none_or(|f| fields.contains(&f)),
        };
        if !known {
            return Err(format!(
                "{origin}, line {}: unknown variable `{path}`",
                line_of(source, &path)
            ));
        }
    }
    Ok(())
}

/// The 1-based line where `path` (or its first part) first appears.
fn line_of(source: &str, path: &str) -> usize {
    let top = path.split('.').next().unwrap_or(path);
    [path, top]
        .iter()
        .find_map(|needle| {
            source
                .lines()
                .position(|line| line.contains(needle))
                .map(|i| i + 1)
        })
        .unwrap_or(1)
}
