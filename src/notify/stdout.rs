//! The `stdout` backend: one JSON line per notification, so a newcomer sees it work.

use std::io::Write;
use std::time::Duration;

use super::Notification;
use super::backend::{Backend, BoxFuture, DeliveryError};
use crate::store::format_ms;

/// Prints each notification as one JSON line on stdout.
#[derive(Debug)]
pub struct Stdout {
    name: String,
}

impl Stdout {
    /// A stdout backend with this name.
    pub fn new(name: &str) -> Stdout {
        Stdout { name: name.into() }
    }
}

impl Backend for Stdout {
    fn name(&self) -> &str {
        &self.name
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    fn deliver<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let line = self.line(n);
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")
                .and_then(|_| out.flush())
                .map_err(|e| DeliveryError::Transient(format!("cannot write to stdout: {e}")))
        })
    }
}

impl Stdout {
    /// The line printed: the same names as templates and `events list` (`kind`, `phone`).
    fn line(&self, n: &Notification) -> serde_json::Value {
        serde_json::json!({
            "kind": n.kind,
            "backend": self.name,
            "id": n.id,
            "user_id": n.user_id,
            "email": n.email,
            "name": n.name,
            "phone": n.phone_number,
            "message": n.message,
            "details": n.payload,
            "attempt": n.attempt,
            "created_at": format_ms(n.created_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_uses_the_template_vocabulary() {
        let n = Notification {
            id: 7,
            kind: "call".into(),
            user_id: "U1".into(),
            email: "a@example.com".into(),
            name: "Ann".into(),
            phone_number: Some("+4930123456".into()),
            message: "hello".into(),
            payload: None,
            route: None,
            attempt: 1,
            stage: 0,
            stage_attempts: 1,
            contacts: Default::default(),
            created_at: 0,
        };
        let line = Stdout::new("stdout").line(&n);
        assert_eq!(line["kind"], "call");
        assert_eq!(line["phone"], "+4930123456");
        assert!(line.get("notification").is_none() && line.get("phone_number").is_none());
    }
}
