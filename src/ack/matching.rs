//! Which page a person means: their pages from OnCall's webhooks, joined with the alert
//! group keys and numbers in what the relay delivered to them.

use super::registry;
use super::texts::Sent;
use super::{Ack, AckError, PAGE_WINDOW, texts};
use crate::directory::{User, email_key};
use crate::store::now_ms;

/// A page the person who answers could mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Candidate {
    pub(super) id: String,
    pub(super) title: String,
    pub(super) state: String,
    pub(super) number: Option<u64>,
    pub(super) seen_at: i64,
}

impl Candidate {
    pub(super) fn label(&self) -> String {
        match self.number {
            Some(n) => format!("#{n}"),
            None if !self.title.is_empty() => {
                let short: String = self.title.chars().take(40).collect();
                format!("\"{short}\"")
            }
            None => self.id.clone(),
        }
    }
}

impl Ack {
    /// The pages of `user` in the window, newest first: from webhooks, and from the alert
    /// group keys and numbers in what the relay delivered to them.
    pub(super) async fn candidates(&self, user: &User) -> Result<Vec<Candidate>, AckError> {
        let since = now_ms() - PAGE_WINDOW.as_millis() as i64;
        let mut found: Vec<Candidate> =
            registry::pages(&self.store, &email_key(&user.email), since)
                .await?
                .into_iter()
                .map(|p| Candidate {
                    id: p.alert_group_id,
                    title: p.title,
                    state: p.state,
                    number: None,
                    seen_at: p.seen_at,
                })
                .collect();
        for sent in texts::recent(&self.store, &user.id, since).await? {
            for key in &sent.keys {
                match found.iter_mut().find(|c| &c.id == key) {
                    Some(c) => {
                        c.number = c.number.or(sent.number);
                        c.seen_at = c.seen_at.max(sent.at);
                    }
                    None => {
                        let group = registry::group(&self.store, key).await?;
                        found.push(Candidate {
                            id: key.clone(),
                            title: group.as_ref().map(|g| g.title.clone()).unwrap_or_default(),
                            state: group.map(|g| g.state).unwrap_or_else(|| "firing".into()),
                            number: sent.number,
                            seen_at: sent.at,
                        });
                    }
                }
            }
            // A text with a number and a title but no key: the page of the same title.
            if sent.keys.is_empty()
                && let (Some(n), Some(title)) = (sent.number, &sent.title)
                && let Some(c) = found
                    .iter_mut()
                    .find(|c| c.number.is_none() && texts::same_title(&c.title, title))
            {
                c.number = Some(n);
            }
        }
        found.sort_by_key(|c| std::cmp::Reverse(c.seen_at));
        Ok(found)
    }
}

/// The page a delivered notification was about: by the alert group key it carried, else by
/// OnCall's number, else by its title.
pub(super) fn pick<'a>(candidates: &'a [Candidate], sent: &Sent) -> Option<&'a Candidate> {
    sent.keys
        .iter()
        .find_map(|k| candidates.iter().find(|c| &c.id == k))
        .or_else(|| {
            sent.number
                .and_then(|n| candidates.iter().find(|c| c.number == Some(n)))
        })
        .or_else(|| {
            sent.title
                .as_deref()
                .and_then(|t| candidates.iter().find(|c| texts::same_title(&c.title, t)))
        })
}
