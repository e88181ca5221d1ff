//! Messages sent in parts (a long SMS, a long Telegram text): the parts that went out are
//! recorded on the notification as they go, so a retry resumes at the first unsent part
//! instead of sending the earlier ones again.
//!
//! What is recorded is a count and a digest of the backend's name and every part's text: a
//! retry that splits the text differently (the configuration changed) or another backend
//! (the next step of the route) starts from the first part again, since a repeat is better
//! than a lost part.

use sha2::{Digest, Sha256};

use super::queue;
use crate::store::Store;

/// Where a delivery records what went out: the parts sent, on the claimed row under its claim
/// tag, and the chat messages that can be edited later.
#[derive(Debug, Clone, Default)]
pub struct PartsLog {
    row: Option<(Store, i64, i64)>,
}

impl PartsLog {
    /// Records on notification `id`, only while the claim `claim` holds it.
    pub(crate) fn new(store: Store, id: i64, claim: i64) -> PartsLog {
        PartsLog {
            row: Some((store, id, claim)),
        }
    }

    /// Records that the first `sent` parts of the split `digest` went out. A failure is
    /// logged, not returned: the part did go out, and at worst a retry sends it again.
    pub(crate) async fn record(&self, digest: &str, sent: usize) {
        let Some((store, id, claim)) = &self.row else {
            return;
        };
        if let Err(e) = queue::record_parts(store, *id, *claim, digest, sent as i64).await {
            tracing::warn!(id, error = %e, sent, "cannot record the parts sent; a retry may repeat them");
        }
    }
}

impl PartsLog {
    /// Records that notification went out as chat message `reference` in `chat`, to be edited
    /// when its alert group changes. A failure is logged: the message did go out, and at worst
    /// it is not edited.
    pub(crate) async fn record_message(
        &self,
        backend: &str,
        chat: &str,
        reference: &str,
        text: &str,
    ) {
        let Some((store, id, _)) = &self.row else {
            return;
        };
        if let Err(e) =
            super::chat_messages::record(store, *id, backend, chat, reference, text).await
        {
            tracing::warn!(id, error = %e, "cannot record the chat message sent; it will not be edited");
        }
    }
}

/// Identifies one split of a message by one backend: hex SHA-256 over the backend's name and
/// each part, length-prefixed so that different splits cannot collide by concatenation.
pub(crate) fn digest(backend: &str, parts: &[String]) -> String {
    let mut hash = Sha256::new();
    for text in std::iter::once(backend).chain(parts.iter().map(String::as_str)) {
        hash.update((text.len() as u64).to_be_bytes());
        hash.update(text.as_bytes());
    }
    hash.finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How many of `parts` to skip: those an earlier attempt recorded for this same split.
pub(crate) fn already_sent(
    recorded: i64,
    recorded_digest: Option<&str>,
    digest: &str,
    parts: usize,
) -> usize {
    if recorded_digest != Some(digest) {
        return 0;
    }
    usize::try_from(recorded).unwrap_or(0).min(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Notification;
    use crate::notify::backends::{DeliveryError, send_parts, testing};

    fn strings(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn digest_tells_backends_and_splits_apart() {
        let split = strings(&["(1/2) a b", "(2/2) c"]);
        let d = digest("twilio", &split);
        assert_eq!(d.len(), 32);
        assert_eq!(d, digest("twilio", &split));
        assert_ne!(d, digest("sms2", &split));
        assert_ne!(d, digest("twilio", &strings(&["(1/2) a", "(2/2) b c"])));
        assert_ne!(
            digest("ab", &strings(&["c"])),
            digest("a", &strings(&["bc"]))
        );
    }

    /// Sends `parts` for `n` through a receiver that fails the request numbered `fail_at`
    /// (from 0); what it was asked to send, in order.
    async fn send(
        n: &Notification,
        parts: &[String],
        fail_at: Option<usize>,
    ) -> (Vec<String>, bool) {
        let asked = std::sync::Mutex::new(Vec::new());
        let result = send_parts(n, "sms", parts, |part| {
            let mut asked = asked.lock().expect("lock");
            asked.push(part.to_string());
            let fail = fail_at == Some(asked.len() - 1);
            async move {
                if fail {
                    Err(DeliveryError::Transient("busy".into()))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        (asked.into_inner().expect("lock"), result.is_ok())
    }

    #[tokio::test]
    async fn a_retry_resumes_at_the_first_unsent_part_of_the_same_split() {
        let parts = strings(&["(1/3) a", "(2/3) b", "(3/3) c"]);
        let fresh = testing::notification("sms");
        let (asked, ok) = send(&fresh, &parts, Some(1)).await;
        assert_eq!((asked, ok), (strings(&["(1/3) a", "(2/3) b"]), false));
        // As recorded after part 1 went out: the retry starts at part 2.
        let resumed = Notification {
            parts_sent: 1,
            parts_digest: Some(digest("sms", &parts)),
            ..fresh.clone()
        };
        let (asked, ok) = send(&resumed, &parts, None).await;
        assert_eq!((asked, ok), (strings(&["(2/3) b", "(3/3) c"]), true));
        // Every part went out before the outcome was lost: nothing is sent again.
        let done = Notification {
            parts_sent: 3,
            ..resumed.clone()
        };
        assert_eq!(send(&done, &parts, None).await, (vec![], true));
        // Another split (or another backend's) starts over.
        let other = Notification {
            parts_digest: Some(digest("telegram", &parts)),
            ..resumed
        };
        assert_eq!(send(&other, &parts, None).await, (parts.clone(), true));
        // A failure names the part.
        let err = send_parts(&fresh, "sms", &parts, |_| async {
            Err(DeliveryError::Transient("busy".into()))
        })
        .await;
        assert_eq!(err, Err(DeliveryError::Transient("part 1/3: busy".into())));
    }

    #[test]
    fn only_parts_of_the_same_split_are_skipped() {
        assert_eq!(already_sent(1, Some("d"), "d", 3), 1);
        assert_eq!(already_sent(3, Some("d"), "d", 3), 3);
        assert_eq!(already_sent(7, Some("d"), "d", 3), 3);
        assert_eq!(already_sent(2, Some("other"), "d", 3), 0);
        assert_eq!(already_sent(2, None, "d", 3), 0);
        assert_eq!(already_sent(-1, Some("d"), "d", 3), 0);
    }
}
