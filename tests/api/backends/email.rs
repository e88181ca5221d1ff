//! The email backend against a tiny fake SMTP server on loopback.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oncall_relay::config::{BackendSettings, EmailSettings, Secret, Settings, SmtpSecurity};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::{Conformance, Message, SMS, Spoil, TRANSIENT_MESSAGE, to_alice, to_bob, with_backend};
use crate::db_test;
use crate::helpers::*;

/// One mail the fake accepted.
#[derive(Debug, Clone)]
struct Mail {
    from: String,
    to: Vec<String>,
    /// The DATA section, dot-unstuffed, with `\n` line ends.
    data: String,
}

impl Mail {
    fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}: ", name.to_ascii_lowercase());
        self.data
            .split("\n\n")
            .next()
            .unwrap_or("")
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].to_string())
    }

    fn body(&self) -> &str {
        self.data.split_once("\n\n").map(|(_, b)| b).unwrap_or("")
    }
}

#[derive(Default)]
struct SmtpState {
    mails: Vec<Mail>,
    auth: Vec<String>,
    /// Answers to RCPT, in order; after them 250.
    rcpt_script: VecDeque<&'static str>,
    rcpt_default: Option<&'static str>,
    rcpt_seen: usize,
}

/// Speaks just enough SMTP for lettre: EHLO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, RSET,
/// NOOP, QUIT.
#[derive(Clone)]
struct FakeSmtp {
    addr: SocketAddr,
    state: Arc<Mutex<SmtpState>>,
}

impl FakeSmtp {
    async fn start() -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(SmtpState::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, shared.clone()));
            }
        });
        FakeSmtp { addr, state }
    }

    fn script_rcpt(&self, replies: &[&'static str], default: &'static str) {
        let mut s = self.state.lock().expect("lock");
        s.rcpt_script = replies.iter().copied().collect();
        s.rcpt_default = Some(default);
    }

    fn mails(&self) -> Vec<Mail> {
        self.state.lock().expect("lock").mails.clone()
    }

    fn auth(&self) -> Vec<String> {
        self.state.lock().expect("lock").auth.clone()
    }

    fn rcpt_seen(&self) -> usize {
        self.state.lock().expect("lock").rcpt_seen
    }
}

async fn session(stream: tokio::net::TcpStream, state: Arc<Mutex<SmtpState>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut from = String::new();
    let mut to = Vec::new();
    if write.write_all(b"220 fake.test ESMTP\r\n").await.is_err() {
        return;
    }
    let angle = |arg: &str| -> String {
        arg.split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(addr, _)| addr.to_string())
            .unwrap_or_default()
    };
    // Records how the client signed in; the answer that accepts it.
    let authenticated = |how: String| -> String {
        state.lock().expect("lock").auth.push(how);
        "235 2.7.0 accepted\r\n".into()
    };
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            "250-fake.test\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".into()
        } else if upper.starts_with("HELO") {
            "250 fake.test\r\n".into()
        } else if upper.starts_with("AUTH PLAIN") {
            let mut token = line[10..].trim().to_string();
            if token.is_empty() {
                let _ = write.write_all(b"334 \r\n").await;
                token = lines.next_line().await.ok().flatten().unwrap_or_default();
            }
            authenticated(format!("PLAIN {token}"))
        } else if upper.starts_with("AUTH LOGIN") {
            let _ = write.write_all(b"334 VXNlcm5hbWU6\r\n").await;
            let user = lines.next_line().await.ok().flatten().unwrap_or_default();
            let _ = write.write_all(b"334 UGFzc3dvcmQ6\r\n").await;
            let pass = lines.next_line().await.ok().flatten().unwrap_or_default();
            authenticated(format!("LOGIN {user} {pass}"))
        } else if upper.starts_with("MAIL FROM:") {
            from = angle(&line);
            to.clear();
            "250 2.1.0 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let mut s = state.lock().expect("lock");
            s.rcpt_seen += 1;
            let answer = s
                .rcpt_script
                .pop_front()
                .or(s.rcpt_default)
                .unwrap_or("250 2.1.5 ok");
            if answer.starts_with('2') {
                to.push(angle(&line));
            }
            format!("{answer}\r\n")
        } else if upper == "DATA" {
            if write
                .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
                .await
                .is_err()
            {
                return;
            }
            let mut data = Vec::new();
            while let Ok(Some(l)) = lines.next_line().await {
                if l == "." {
                    break;
                }
                data.push(l.strip_prefix('.').map(str::to_string).unwrap_or(l));
            }
            state.lock().expect("lock").mails.push(Mail {
                from: from.clone(),
                to: std::mem::take(&mut to),
                data: data.join("\n"),
            });
            "250 2.0.0 queued\r\n".into()
        } else if upper == "RSET" || upper.starts_with("NOOP") {
            "250 2.0.0 ok\r\n".into()
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
            return;
        } else {
            "502 5.5.2 not implemented\r\n".into()
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn email_settings(smtp: &FakeSmtp) -> EmailSettings {
    EmailSettings {
        host: "127.0.0.1".into(),
        port: Some(smtp.addr.port()),
        security: SmtpSecurity::None,
        username: None,
        password: None,
        from: "OnCall <oncall@example.com>".into(),
        to: None,
        subject: None,
        timeout: Duration::from_secs(3),
    }
}

/// The settings of `db`, delivering by email as `e` says.
fn use_email(db: &TestDb, e: EmailSettings) -> Settings {
    with_backend(db, "mail", BackendSettings::Email(e))
}

async fn email_subject_template_and_fallback_recipient(db: TestDb) {
    let smtp = FakeSmtp::start().await;
    let s = use_email(
        &db,
        EmailSettings {
            subject: Some("{{ kind|upper }} for {{ email }}: {{ title }}".into()),
            to: Some("fallback@example.com".into()),
            ..email_settings(&smtp)
        },
    );
    let (app, events) = deliver_to_alice(s, "/api/v1/make_call", "Wake up").await;
    assert_eq!(events[0].status, "delivered", "{:?}", events[0]);
    let mails = smtp.mails();
    assert_eq!(
        mails[0].to,
        ["alice@example.com"],
        "the user's address wins"
    );
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("CALL for alice@example.com: Wake up")
    );
    app.stop().await;
}
db_test!(email_subject_template_and_fallback_recipient);

async fn email_unreachable_server_is_transient(db: TestDb) {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let smtp = FakeSmtp::start().await;
    let mut s = use_email(
        &db,
        EmailSettings {
            port: Some(port),
            ..email_settings(&smtp)
        },
    );
    s.queue.max_attempts = 2;
    let (app, events) = deliver_to_alice(s, "/api/v1/send_sms", "nobody home").await;
    let outcomes: Vec<&str> = events[0]
        .attempt_log
        .iter()
        .map(|a| a.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["retry", "failed"], "{:?}", events[0]);
    app.stop().await;
}
db_test!(email_unreachable_server_is_transient);

const MULTILINE: &str = "Disk full on db-1\nUsage is at 97 % since 10:42.\n.dotted line";

/// The conformance row: SMTP with AUTH; a 5xx to RCPT is permanent, a 4xx transient.
pub struct Row(FakeSmtp);

impl Row {
    fn email(&self) -> EmailSettings {
        EmailSettings {
            username: Some("relay".into()),
            password: Some(Secret("s3cret".into())),
            ..email_settings(&self.0)
        }
    }
}

impl Conformance for Row {
    type Settings = EmailSettings;
    const WRAP: fn(EmailSettings) -> BackendSettings = BackendSettings::Email;
    const NAME: &'static str = "mail";
    const CONTACTS: &'static [(&'static str, &'static str)] =
        &[("email", "alice.pager@example.org")];
    const SENDS: &'static [Message] = &[to_alice(SMS, MULTILINE), to_bob(SMS, "CPU high")];
    const PERMANENT_ERROR: &'static [&'static str] = &["550"];
    const TRANSIENT_ERROR: &'static [&'static str] = &["451"];
    const SECRETS: &'static [&'static str] = &["s3cret"];
    const SPOILED: &'static [Spoil<EmailSettings>] = &[
        (|s| s.from = "not an address".into(), "`from`"),
        (|s| s.host = " ".into(), "`host`"),
        (|s| s.to = Some("nobody at all".into()), "`to`"),
        (|s| s.password = None, "`password`"),
        (|s| s.subject = Some("{{ title ".into()), "`subject`"),
    ];

    async fn start() -> Self {
        Row(FakeSmtp::start().await)
    }
    fn fail_permanently(&self) {
        self.0.script_rcpt(&[], "550 5.1.1 no such mailbox");
    }
    fn fail_once(&self) {
        self.0
            .script_rcpt(&["451 4.7.1 greylisted, try again later"], "250 2.1.5 ok");
    }
    fn seen(&self) -> usize {
        self.0.rcpt_seen()
    }
    fn base(&self) -> EmailSettings {
        self.email()
    }
    fn assert_sent(&self, _: &[NotificationRecord], _: &User) {
        let smtp = &self.0;
        let mails = smtp.mails();
        assert_eq!(mails.len(), 2);
        let alice = &mails[0];
        assert_eq!(alice.from, "oncall@example.com");
        assert_eq!(alice.to, ["alice.pager@example.org"]);
        assert_eq!(
            alice.header("Subject").as_deref(),
            Some("[OnCall] Disk full on db-1")
        );
        assert!(
            alice
                .header("To")
                .is_some_and(|t| t.contains("alice.pager@example.org")),
            "{alice:?}"
        );
        assert!(
            alice
                .header("Content-Type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{alice:?}"
        );
        assert_eq!(alice.body().trim_end(), MULTILINE);
        // Without an `email` contact, the user's own address.
        let bob = &mails[1];
        assert_eq!(bob.to, ["bob@example.com"]);
        assert_eq!(bob.header("Subject").as_deref(), Some("[OnCall] CPU high"));
        assert_eq!(bob.body().trim_end(), "CPU high");
        // AUTH PLAIN carries "\0relay\0s3cret".
        assert!(
            smtp.auth()
                .iter()
                .all(|a| a == "PLAIN AHJlbGF5AHMzY3JldA=="),
            "{:?}",
            smtp.auth()
        );
        assert!(!smtp.auth().is_empty());
    }
    fn after_permanent(&self) {
        assert!(self.0.mails().is_empty());
    }
    fn after_transient(&self) {
        let mails = self.0.mails();
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].body().trim_end(), TRANSIENT_MESSAGE);
    }
}
