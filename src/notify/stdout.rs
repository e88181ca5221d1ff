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
            let line = serde_json::json!({
                "notification": n.kind,
                "backend": self.name,
                "id": n.id,
                "user_id": n.user_id,
                "email": n.email,
                "name": n.name,
                "phone_number": n.phone_number,
                "message": n.message,
                "details": n.payload,
                "attempt": n.attempt,
                "created_at": format_ms(n.created_at),
            });
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}")
                .and_then(|_| out.flush())
                .map_err(|e| DeliveryError::Transient(format!("cannot write to stdout: {e}")))
        })
    }
}
