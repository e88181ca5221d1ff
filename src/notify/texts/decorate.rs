//! A backend that sends what [`Texts`] words for each person, in place of OnCall's text.

use std::sync::Arc;

use super::Texts;
use crate::notify::Notification;
use crate::notify::backends::{Backend, Base, BoxFuture, DeliveryError};

/// `inner`, handed each notification with its text (and title) worded for its reader; OnCall's
/// own text stays what templates see as `message`.
#[derive(Debug)]
pub struct Reworded {
    inner: Arc<dyn Backend>,
    texts: Texts,
}

impl Reworded {
    /// `inner` speaking through `texts`.
    pub fn new(inner: Arc<dyn Backend>, texts: Texts) -> Reworded {
        Reworded { inner, texts }
    }

    /// `n` as this backend sends it.
    pub fn reword(&self, n: &Notification) -> Result<Notification, DeliveryError> {
        reword(&self.texts, n)
    }
}

/// `n` with the text and title `texts` give it; `n` unchanged when they give none.
pub(crate) fn reword(texts: &Texts, n: &Notification) -> Result<Notification, DeliveryError> {
    let worded = texts
        .word(n)
        .map_err(|e| DeliveryError::Permanent(format!("message template: {e}")))?;
    let Some(worded) = worded else {
        return Ok(n.clone());
    };
    let mut out = n.clone();
    out.reader.original = Some(n.message.clone());
    out.message = worded.text;
    if let Some(title) = worded.title {
        let payload = out.payload.get_or_insert_with(|| serde_json::json!({}));
        if let Some(map) = payload.as_object_mut() {
            map.insert("title".into(), title.into());
        }
    }
    Ok(out)
}

impl Backend for Reworded {
    fn base(&self) -> &Base {
        self.inner.base()
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let worded = self.reword(n)?;
            self.inner.deliver(&worded).await
        })
    }

    fn reports_answer(&self, n: &Notification) -> bool {
        self.inner.reports_answer(n)
    }
}
