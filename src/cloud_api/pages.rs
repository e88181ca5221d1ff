//! Pages behind the links the OnCall UI builds from `info.url` (`a/grafana-oncall-app/...`).
//!
//! There is no user interface to send people to, so the page says where phone numbers are
//! managed instead of showing a 404.

use axum::response::Html;

/// A short page explaining how to verify a phone number with this relay.
pub async fn oncall_link() -> Html<&'static str> {
    Html(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>oncall-relay</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">\
         <h1>oncall-relay</h1>\
         <p>This OnCall installation sends its phone calls and SMS through oncall-relay.</p>\
         <p>A user shows as <em>phone number verified</em> in OnCall when the relay's directory \
         has a phone number for their email. An operator adds or changes it with:</p>\
         <pre>oncall-relay users add --email alice@example.com --phone '+49 30 123456'\n\
oncall-relay users update alice@example.com --phone '+49 30 654321'</pre>\
         <p>Then press <em>Sync</em> in OnCall's Cloud settings, or wait for the next sync.</p>\
         </body></html>",
    )
}
