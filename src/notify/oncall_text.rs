//! Reading the fixed English texts Grafana OnCall sends (its SMS, bundled SMS and call
//! renderers) back into their parts, so that templates can say the same in other words.
//!
//! The engine builds them as (`apps/alerts/incident_appearance/renderers/`):
//! - SMS: `Grafana OnCall: Alert group #<n>"<title>" from stack: "<stack>", integration:
//!   <integration>, alerts registered: <count>.`
//! - bundled SMS: `Grafana OnCall: Alert group(s) #1, #2, #3[ and <k> more] from stack: <stack>,
//!   integration(s): <integration>[ and <m> more].`
//! - call: `You are invited to check an Alert Group from Grafana OnCall. Alert via
//!   <integration> with title <title> triggered <count> times`
//!
//! A title or an integration name may itself contain the separators, so each part is cut at
//! the separator that the rest of the text still needs (the last one for the title).

use serde::Serialize;

/// The parts of an OnCall text; every field is present (possibly empty) so that templates can
/// test them without tripping over an undefined variable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AlertText {
    /// `sms`, `sms_bundle`, `call`, or `unknown` when the text was not recognised.
    pub shape: &'static str,
    /// The alert group's number within the organisation (the first one of a bundle).
    pub number: Option<u64>,
    /// Every alert group number the text names.
    pub numbers: Vec<u64>,
    /// Alert groups a bundle has beyond those it names.
    pub more: u64,
    /// The alert group's title.
    pub title: Option<String>,
    /// The integration's (first) name.
    pub integration: Option<String>,
    /// Integrations a bundle has beyond the one it names.
    pub more_integrations: u64,
    /// The Grafana stack (organisation) slug.
    pub stack: Option<String>,
    /// Alerts in the group.
    pub count: Option<u64>,
    /// Alert groups in all (a bundle's named ones and the rest; 1 for a single alert group).
    pub groups: u64,
}

const SMS_PREFIX: &str = "Grafana OnCall: ";
const CALL_PREFIX: &str = "You are invited to check an Alert Group from Grafana OnCall. Alert via ";

impl AlertText {
    /// The parts of `text`; an unrecognised text gives shape `unknown` and no parts.
    pub fn parse(text: &str) -> AlertText {
        let text = text.trim();
        parse_call(text)
            .or_else(|| parse_sms(text))
            .or_else(|| parse_bundle(text))
            .unwrap_or(AlertText {
                shape: "unknown",
                ..AlertText::default()
            })
    }

    /// Whether the text was recognised.
    pub fn known(&self) -> bool {
        self.shape != "unknown"
    }
}

/// `You are invited ... Alert via <integration> with title <title> triggered <n> times`.
fn parse_call(text: &str) -> Option<AlertText> {
    let rest = text.strip_prefix(CALL_PREFIX)?;
    let rest = rest.strip_suffix(" times")?;
    let (rest, count) = rest.rsplit_once(" triggered ")?;
    let count = count.trim().parse().ok()?;
    let (integration, title) = rest.split_once(" with title ")?;
    Some(AlertText {
        shape: "call",
        title: Some(unquote(title).to_string()),
        integration: Some(integration.trim().to_string()),
        count: Some(count),
        groups: 1,
        ..AlertText::default()
    })
}

/// `Grafana OnCall: Alert group #<n>"<title>" from stack: "<stack>", integration: <i>,
/// alerts registered: <count>.`
fn parse_sms(text: &str) -> Option<AlertText> {
    let rest = text
        .strip_prefix(SMS_PREFIX)?
        .strip_prefix("Alert group #")?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    let number: u64 = rest.get(..digits)?.parse().ok()?;
    let rest = rest.get(digits..)?.strip_prefix('"')?;
    let rest = rest.strip_suffix('.')?;
    let (rest, count) = rest.rsplit_once(", alerts registered: ")?;
    let count = count.trim().parse().ok()?;
    let (title, rest) = rest.rsplit_once("\" from stack: ")?;
    let (stack, integration) = rest.split_once(", integration: ")?;
    Some(AlertText {
        shape: "sms",
        number: Some(number),
        numbers: vec![number],
        title: Some(title.to_string()),
        integration: Some(integration.trim().to_string()),
        stack: Some(unquote(stack).to_string()),
        count: Some(count),
        groups: 1,
        ..AlertText::default()
    })
}

/// `Grafana OnCall: Alert group(s) #1, #2[ and <k> more] from stack: <stack>,
/// integration(s): <name>[ and <m> more].`
fn parse_bundle(text: &str) -> Option<AlertText> {
    let rest = text.strip_prefix(SMS_PREFIX)?;
    let rest = rest
        .strip_prefix("Alert groups ")
        .or_else(|| rest.strip_prefix("Alert group "))?;
    let rest = rest.strip_suffix('.')?;
    let (groups, rest) = rest.split_once(" from stack: ")?;
    let (groups, more) = split_more(groups)?;
    let numbers = groups
        .split(", ")
        .map(|g| g.trim().strip_prefix('#')?.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    let (stack, integrations) = rest
        .split_once(", integrations: ")
        .or_else(|| rest.split_once(", integration: "))?;
    let (integration, more_integrations) = split_more(integrations)?;
    Some(AlertText {
        shape: "sms_bundle",
        number: numbers.first().copied(),
        groups: numbers.len() as u64 + more,
        numbers,
        more,
        integration: Some(integration.trim().to_string()),
        more_integrations,
        stack: Some(unquote(stack).to_string()),
        ..AlertText::default()
    })
}

/// `"<text> and <n> more"` into the text and `n`; no suffix gives 0.
fn split_more(text: &str) -> Option<(&str, u64)> {
    if let Some(rest) = text.strip_suffix(" more")
        && let Some((head, n)) = rest.rsplit_once(" and ")
        && let Ok(n) = n.parse()
    {
        return Some((head, n));
    }
    (!text.is_empty()).then_some((text, 0))
}

/// `text` without one pair of surrounding double quotes.
fn unquote(text: &str) -> &str {
    let text = text.trim();
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_sms_gives_number_title_stack_integration_and_count() {
        let a = AlertText::parse(
            "Grafana OnCall: Alert group #2\"CPU \"high\" from stack\" from stack: \"prod\", integration: Grafana Alerting, alerts registered: 17.",
        );
        assert_eq!(
            a,
            AlertText {
                shape: "sms",
                number: Some(2),
                numbers: vec![2],
                title: Some("CPU \"high\" from stack".into()),
                integration: Some("Grafana Alerting".into()),
                stack: Some("prod".into()),
                count: Some(17),
                groups: 1,
                ..AlertText::default()
            }
        );
    }

    #[test]
    fn a_bundled_sms_gives_every_number_and_what_it_left_out() {
        let a = AlertText::parse(
            "Grafana OnCall: Alert groups #1, #2, #3 and 2 more from stack: prod, integrations: Grafana Alerting and 1 more.",
        );
        assert_eq!(a.shape, "sms_bundle");
        assert_eq!(a.numbers, vec![1, 2, 3]);
        assert_eq!(a.number, Some(1));
        assert_eq!((a.more, a.groups), (2, 5));
        assert_eq!(a.integration.as_deref(), Some("Grafana Alerting"));
        assert_eq!(a.more_integrations, 1);
        assert_eq!(a.stack.as_deref(), Some("prod"));
        assert_eq!(a.count, None);

        let one = AlertText::parse(
            "Grafana OnCall: Alert group #7 from stack: acme, integration: Prometheus.",
        );
        assert_eq!(one.shape, "sms_bundle");
        assert_eq!((one.numbers.as_slice(), one.groups), (&[7][..], 1));
        assert_eq!(one.integration.as_deref(), Some("Prometheus"));
    }

    #[test]
    fn a_call_gives_integration_title_and_count() {
        let a = AlertText::parse(
            "You are invited to check an Alert Group from Grafana OnCall. Alert via Grafana Alerting with title \"CPU high\" triggered 3 times",
        );
        assert_eq!(a.shape, "call");
        assert_eq!(a.integration.as_deref(), Some("Grafana Alerting"));
        assert_eq!(a.title.as_deref(), Some("CPU high"));
        assert_eq!(a.count, Some(3));
        assert_eq!(a.number, None);
        // A title holding the separators is kept whole.
        let b = AlertText::parse(
            "You are invited to check an Alert Group from Grafana OnCall. Alert via Prom with title db triggered with title x triggered 1 times",
        );
        assert_eq!(b.title.as_deref(), Some("db triggered with title x"));
        assert_eq!(b.count, Some(1));
    }

    #[test]
    fn unknown_text_is_not_taken_apart() {
        for text in [
            "",
            "Disk full on db-1",
            "Grafana OnCall: Alert group #x\"t\" from stack: \"s\", integration: i, alerts registered: 1.",
            "Grafana OnCall: something new",
            "You are invited to check an Alert Group from Grafana OnCall. Alert via X",
        ] {
            let a = AlertText::parse(text);
            assert_eq!(a.shape, "unknown", "{text}");
            assert!(!a.known());
            assert_eq!(a.title, None);
        }
    }
}
