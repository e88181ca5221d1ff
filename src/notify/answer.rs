//! Whether a call was answered.
//!
//! "Delivered" for a call means the provider accepted it. Where the provider reports more
//! (Twilio's status callbacks, an Asterisk Stasis app's channel events), the answer is stored in the notification's `answer`:
//! `answered`, `no-answer`, `busy`, `failed` or `canceled`.
//!
//! A route step with `require_answer` does not finish on acceptance: the notification waits
//! as `awaiting_answer` (answer `awaiting`), due again at its deadline. A status that comes in
//! makes it due at once; whichever comes first, a worker claims it and settles the step:
//! answered is delivered, anything else (or no status by the deadline, answer `no-status`)
//! fails the step, and the next step of the route takes over. The row stays in the queue
//! meanwhile, so a restart loses nothing.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::Notification;
use super::backends::DeliveryError;
use crate::store::Store;

/// Status of a notification whose call waits for its answer.
pub const AWAITING_ANSWER: &str = "awaiting_answer";
/// Answer while waiting.
pub const AWAITING: &str = "awaiting";
/// Answer when no status came before the deadline.
pub const NO_STATUS: &str = "no-status";
/// Answer of a call someone picked up.
pub const ANSWERED: &str = "answered";

/// Characters of a backend name kept as they are in a hook URL.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// The URL Twilio posts the status of calls placed by `backend` to, below `hooks` (the public
/// root of the hook routes).
pub fn twilio_status_url(hooks: &str, backend: &str) -> String {
    twilio_hook_url(hooks, backend, "status")
}

/// The URL of the Twilio hook `endpoint` of `backend`, below `hooks`.
pub fn twilio_hook_url(hooks: &str, backend: &str, endpoint: &str) -> String {
    format!(
        "{}/twilio/{}/{endpoint}",
        hooks.trim_end_matches('/'),
        utf8_percent_encode(backend, SEGMENT)
    )
}

/// Route steps that require an answer but cannot get one: without `app.hostname` Twilio has
/// nowhere to report to, so such a call counts as delivered once placed. One sentence each.
pub fn warnings(settings: &crate::config::Settings) -> Vec<String> {
    if settings.public_url().is_some() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (kind, steps) in &settings.plugin.routes {
        for (i, step) in steps.iter().enumerate() {
            // Asterisk reports on its event stream, which needs no public URL.
            let asterisk = matches!(
                settings.plugin.backends.get(&step.backend),
                Some(crate::config::BackendSettings::Sip(s)) if s.app.is_some()
            );
            if step.require_answer && !asterisk {
                out.push(format!(
                    "`plugin.routes.{kind}[{i}].require_answer` has no effect without `app.hostname`: \
                     Twilio cannot report call status, so a call on `{}` counts as delivered once placed",
                    step.backend
                ));
            }
        }
    }
    out
}

/// The answer a Twilio `CallStatus` stands for; `None` for a call still under way.
pub fn from_twilio(call_status: &str) -> Option<&'static str> {
    match call_status.trim() {
        // `in-progress` comes with the `answered` event: someone picked up.
        "in-progress" | "answered" | "completed" => Some(ANSWERED),
        "no-answer" => Some("no-answer"),
        "busy" => Some("busy"),
        "failed" => Some("failed"),
        "canceled" => Some("canceled"),
        _ => None,
    }
}

/// The answer an Asterisk channel that was never answered stands for, by the Q.850 cause
/// it was hung up with.
pub fn from_hangup_cause(cause: i64) -> &'static str {
    match cause {
        // User busy; call rejected.
        17 | 21 => "busy",
        // Normal clearing (the ring timeout), no user responding, no answer.
        0 | 16 | 18 | 19 => "no-answer",
        _ => "failed",
    }
}

/// How a step that waited for an answer ends: answered is delivered, anything else fails
/// the step for good (the route moves on; trying the same phone again is not the point).
pub(crate) fn verdict(n: &Notification) -> Result<(), DeliveryError> {
    match n.answer.as_deref() {
        Some(ANSWERED) => Ok(()),
        None | Some(AWAITING) | Some(NO_STATUS) => Err(DeliveryError::Permanent(
            "no call status arrived before the answer timeout: counted as not answered".into(),
        )),
        Some(other) => Err(DeliveryError::Permanent(format!(
            "the call was not answered ({other})"
        ))),
    }
}

/// Whether a reported answer replaces one already known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Always: the provider's final status of the call.
    Always,
    /// Only while no answer is known: a hang-up after the call was answered does not undo
    /// the answer.
    IfUnknown,
}

/// Stores the answer reported for attempt `attempt` of notification `id`; a notification
/// waiting for it becomes due now. Returns whether a notification matched (a late report for
/// an older attempt does not).
pub async fn record(
    store: &Store,
    id: i64,
    attempt: i64,
    answer: &str,
    now: i64,
    replace: Replace,
) -> Result<bool, sqlx::Error> {
    const ANY: &str = "UPDATE notifications SET answer = $1, updated_at = $2, \
         due_at = CASE WHEN status = 'awaiting_answer' THEN $2 ELSE due_at END \
         WHERE id = $3 AND attempts = $4 AND kind = 'call'";
    const UNANSWERED: &str = "UPDATE notifications SET answer = $1, updated_at = $2, \
         due_at = CASE WHEN status = 'awaiting_answer' THEN $2 ELSE due_at END \
         WHERE id = $3 AND attempts = $4 AND kind = 'call' \
         AND (answer IS NULL OR answer = 'awaiting')";
    let _guard = store.write_guard().await;
    let sql = match replace {
        Replace::Always => ANY,
        Replace::IfUnknown => UNANSWERED,
    };
    let done = sqlx::query(sql)
        .bind(answer.to_string())
        .bind(now)
        .bind(id)
        .bind(attempt)
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_statuses_map_to_answers() {
        for (status, answer) in [
            ("completed", Some("answered")),
            ("in-progress", Some("answered")),
            ("no-answer", Some("no-answer")),
            ("busy", Some("busy")),
            ("failed", Some("failed")),
            ("canceled", Some("canceled")),
            ("ringing", None),
            ("queued", None),
        ] {
            assert_eq!(from_twilio(status), answer, "{status}");
        }
    }

    #[test]
    fn only_an_answered_call_settles_as_delivered() {
        let mut n = super::super::backends::testing::notification("call");
        n.answer = Some("answered".into());
        assert!(verdict(&n).is_ok());
        for other in [None, Some("awaiting"), Some("no-answer"), Some("busy")] {
            n.answer = other.map(str::to_string);
            assert!(matches!(verdict(&n), Err(DeliveryError::Permanent(_))));
        }
    }

    #[test]
    fn status_url_encodes_the_backend_name() {
        assert_eq!(
            twilio_status_url("https://relay.example.com/oncall/hooks/", "tw-1"),
            "https://relay.example.com/oncall/hooks/twilio/tw-1/status"
        );
        assert_eq!(
            twilio_status_url("http://h/hooks", "a b/c"),
            "http://h/hooks/twilio/a%20b%2Fc/status"
        );
    }
}
