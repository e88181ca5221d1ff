//! The `stdout` backend: one JSON line per notification, so a newcomer sees it work.

use std::io::Write;
use std::time::Duration;

use super::{Base, Deliver, DeliveryError};
use crate::notify::Notification;
use crate::store::format_ms;

/// Prints each notification as one JSON line on stdout.
#[derive(Debug)]
pub struct Stdout {
    base: Base,
}

impl Stdout {
    /// A stdout backend with this name.
    pub fn new(name: &str) -> Stdout {
        Stdout {
            base: Base::new(name, Duration::from_secs(5)),
        }
    }

    /// The line printed: the same names as templates and `events list` (`kind`, `phone`).
    fn line(&self, n: &Notification) -> serde_json::Value {
        serde_json::json!({
            "kind": n.kind,
            "backend": self.base.name,
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

impl Deliver for Stdout {
    fn base(&self) -> &Base {
        &self.base
    }

    async fn deliver(&self, n: &Notification) -> Result<(), DeliveryError> {
        let line = self.line(n);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|_| out.flush())
            .map_err(|e| DeliveryError::Transient(format!("cannot write to stdout: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_uses_the_template_vocabulary() {
        let n = Notification {
            id: 7,
            user_id: "U1".into(),
            email: "a@example.com".into(),
            name: "Ann".into(),
            phone_number: Some("+4930123456".into()),
            message: "hello".into(),
            ..crate::notify::backends::testing::notification("call")
        };
        let line = Stdout::new("stdout").line(&n);
        assert_eq!(line["kind"], "call");
        assert_eq!(line["phone"], "+4930123456");
        assert!(line.get("notification").is_none() && line.get("phone_number").is_none());
    }
}
