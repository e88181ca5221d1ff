//! Telegram and Slack: buttons under a page, and replies to the bot.

use crate::db_test;
use crate::helpers::*;
use oncall_relay::config::{BackendSettings, Secret};
use serde_json::{Value, json};

use super::*;

/// A Telegram Bot API that hands out queued updates and records what the bot sends.
#[derive(Clone, Default)]
struct FakeTelegram {
    updates: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    sent: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
}

impl FakeTelegram {
    async fn start() -> (FakeTelegram, String) {
        use axum::extract::{Path, State};
        let fake = FakeTelegram::default();
        let app = axum::Router::new()
            .route(
                "/{bot}/{method}",
                axum::routing::post(
                    |State(f): State<FakeTelegram>,
                     Path((_bot, method)): Path<(String, String)>,
                     axum::Json(body): axum::Json<Value>| async move {
                        if method == "getUpdates" {
                            let next: Vec<Value> =
                                std::mem::take(&mut *f.updates.lock().expect("lock"));
                            if next.is_empty() {
                                // A long poll with nothing new.
                                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                            }
                            return axum::Json(json!({"ok": true, "result": next}));
                        }
                        let mut sent = f.sent.lock().expect("lock");
                        // A sent message is answered as Telegram does: where it landed.
                        let result = if method == "sendMessage" {
                            json!({"message_id": 40 + sent.len(), "chat": {"id": body["chat_id"]}})
                        } else {
                            json!(true)
                        };
                        sent.push((method, body));
                        axum::Json(json!({"ok": true, "result": result}))
                    },
                ),
            )
            .with_state(fake.clone());
        let addr = serve_loopback(app).await;
        (fake, format!("http://{addr}"))
    }

    fn push(&self, update: Value) {
        self.updates.lock().expect("lock").push(update);
    }

    async fn wait_sent(&self, method: &str, count: usize) -> Vec<Value> {
        wait_for(std::time::Duration::from_secs(10), || async {
            let sent: Vec<Value> = self
                .sent
                .lock()
                .expect("lock")
                .iter()
                .filter(|(m, _)| m == method)
                .map(|(_, b)| b.clone())
                .collect();
            (sent.len() >= count).then_some(sent)
        })
        .await
    }
}

/// A bot with buttons and replies at `api_base`.
fn bot(api_base: String) -> BackendSettings {
    BackendSettings::Telegram(oncall_relay::config::TelegramSettings {
        token: Secret("123:abc".into()),
        api_base,
        replies: true,
        ..Default::default()
    })
}

fn button_press(update_id: i64, from: i64, data: &str) -> Value {
    json!({"update_id": update_id, "callback_query": {
        "id": format!("cb{update_id}"), "from": {"id": from},
        "message": {"message_id": 5, "chat": {"id": from}, "text": "Disk full"},
        "data": data
    }})
}

async fn telegram_buttons_and_replies_act_for_the_paged_person_only(db: TestDb) {
    let oncall = Fake::start().await;
    let (telegram, api_base) = FakeTelegram::start().await;
    let s = ack_settings(&db, &oncall);
    let (app, id) = paged_through(s, "tg", bot(api_base), ("telegram", "1001")).await;
    let page = telegram.wait_sent("sendMessage", 1).await;
    assert_eq!(page[0]["chat_id"], 1001);
    let buttons = &page[0]["reply_markup"]["inline_keyboard"][0];
    assert_eq!(buttons[0]["callback_data"], format!("a:{id}"));
    assert_eq!(buttons[2]["text"], "Silence 30 min");

    telegram.push(button_press(1, 999, &format!("a:{id}")));
    let answered = telegram.wait_sent("answerCallbackQuery", 1).await;
    assert_eq!(answered[0]["text"], "", "a stranger's press does nothing");
    assert!(oncall.requests().is_empty());

    telegram.push(json!({"update_id": 2, "message": {
        "message_id": 6, "chat": {"id": 1001}, "from": {"id": 1001}, "text": "ack"
    }}));
    let replies = telegram.wait_sent("sendMessage", 2).await;
    assert_eq!(replies[1]["chat_id"], 1001);
    assert_eq!(replies[1]["text"], "#17 acknowledged.");
    assert!(
        replies[1].get("reply_markup").is_none(),
        "answers carry no buttons"
    );

    telegram.push(button_press(3, 1001, &format!("r:{id}")));
    let answered = telegram.wait_sent("answerCallbackQuery", 2).await;
    assert_eq!(answered[1]["text"], "#17 resolved.");
    let edited = telegram.wait_sent("editMessageText", 1).await;
    assert_eq!(edited[0]["text"], "Disk full\n\n#17 resolved.");
    assert!(edited[0].get("reply_markup").is_none(), "the buttons go");
    assert_eq!(
        acted(&oncall),
        [
            format!("/api/v1/alert_groups/{GROUP}/acknowledge"),
            format!("/api/v1/alert_groups/{GROUP}/resolve")
        ]
    );
    app.stop().await;
}
db_test!(telegram_buttons_and_replies_act_for_the_paged_person_only);

/// OnCall's status-change webhook: `who` moved [`GROUP`] to `state`.
async fn status_change(app: &TestApp, action: &str, state: &str, who: &str) {
    let body = json!({
        "event": {"type": action},
        "user": {"username": who},
        "alert_group": {"id": GROUP, "state": state},
        "alert_group_id": GROUP
    });
    assert_eq!(oncall_webhook(app, WEBHOOK_TOKEN, body).await, 200);
}

async fn telegram_page_is_edited_when_oncall_reports_the_group_acknowledged(db: TestDb) {
    let oncall = Fake::start().await;
    let (telegram, api_base) = FakeTelegram::start().await;
    let s = ack_settings(&db, &oncall);
    let (app, _) = paged_through(s, "tg", bot(api_base), ("telegram", "1001")).await;
    // A page about another alert group, to the same person, is left as it is.
    paged(&app, OTHER, "CPU hot").await;
    sms_about(&app, 18, "CPU hot").await;
    let pages = telegram.wait_sent("sendMessage", 2).await;
    let disk = pages
        .iter()
        .position(|p| p["text"].as_str().is_some_and(|t| t.contains("Disk full")))
        .expect("the page about Disk full");
    let sent_text = pages[disk]["text"].as_str().expect("text").to_string();

    status_change(&app, "acknowledge", "acknowledged", "bob").await;
    let edited = telegram.wait_sent("editMessageText", 1).await;
    assert_eq!(edited[0]["chat_id"], 1001);
    assert_eq!(edited[0]["message_id"], 40 + disk);
    assert_eq!(
        edited[0]["text"],
        format!("{sent_text}\n\nAcknowledged by bob.")
    );
    assert!(edited[0].get("reply_markup").is_none(), "the buttons go");

    // The same state again edits nothing; a new one edits again.
    status_change(&app, "acknowledge", "acknowledged", "bob").await;
    status_change(&app, "resolve", "resolved", "carol").await;
    let edited = telegram.wait_sent("editMessageText", 2).await;
    assert_eq!(
        edited[1]["text"],
        format!("{sent_text}\n\nResolved by carol.")
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(telegram.wait_sent("editMessageText", 0).await.len(), 2);
    app.stop().await;
}
db_test!(telegram_page_is_edited_when_oncall_reports_the_group_acknowledged);

async fn slack_web_api_page_is_edited_when_oncall_reports_the_group_resolved(db: TestDb) {
    let oncall = Fake::start().await;
    let slack = Fake::answering(Reply::Json(
        200,
        r#"{"ok": true, "channel": "D0ALICE", "ts": "1700000000.000100"}"#,
    ))
    .await;
    let s = ack_settings(&db, &oncall);
    let slack_app = BackendSettings::Slack(oncall_relay::config::SlackSettings {
        token: Some(Secret("xoxb-relay".into())),
        channel: Some("#oncall".into()),
        api_base: slack.url.clone(),
        signing_secret: Some(Secret("slack-signing".into())),
        ..Default::default()
    });
    let (app, _) = paged_through(s, "chat", slack_app, ("slack", "U0ALICE")).await;
    let page = wait_for(std::time::Duration::from_secs(10), || async {
        slack.requests().first().map(|r| r.json())
    })
    .await;
    status_change(&app, "resolve", "resolved", "bob").await;
    let update = wait_for(std::time::Duration::from_secs(10), || async {
        slack
            .requests()
            .into_iter()
            .find(|r| r.uri.path().ends_with("/chat.update"))
    })
    .await;
    assert_eq!(update.headers["authorization"], "Bearer xoxb-relay");
    let update = update.json();
    assert_eq!(update["channel"], "D0ALICE");
    assert_eq!(update["ts"], "1700000000.000100");
    assert_eq!(update["blocks"][0]["text"]["text"], page["text"]);
    assert_eq!(
        update["blocks"][1]["elements"][0]["text"],
        "Resolved by bob."
    );
    assert_eq!(
        update["blocks"].as_array().map(Vec::len),
        Some(2),
        "the buttons go"
    );
    app.stop().await;
}
db_test!(slack_web_api_page_is_edited_when_oncall_reports_the_group_resolved);

async fn slack_buttons_act_for_the_paged_person_only(db: TestDb) {
    let oncall = Fake::start().await;
    let slack = Fake::start().await;
    let s = ack_settings(&db, &oncall);
    let slack_app = BackendSettings::Slack(oncall_relay::config::SlackSettings {
        webhook_url: Some(Secret(slack.url.clone())),
        signing_secret: Some(Secret("slack-signing".into())),
        ..Default::default()
    });
    let (app, id) = paged_through(s, "chat", slack_app, ("slack", "U0ALICE")).await;
    let page = slack.first_json().await;
    assert_eq!(page["blocks"][1]["elements"][0]["value"], format!("a:{id}"));
    assert_eq!(page["blocks"][1]["elements"][1]["text"]["text"], "Resolve");
    let click = |member: &str, signed_with: &str, age: i64| {
        let payload = json!({"type": "block_actions", "user": {"id": member},
            "actions": [{"value": format!("a:{id}")}], "message": {"text": "Disk full"}});
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).expect("form");
        let ts = oncall_relay::store::now_ms() / 1000 - age;
        app.client
            .post(app.url("/hooks/slack/chat"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("X-Slack-Request-Timestamp", ts.to_string())
            .header(
                "X-Slack-Signature",
                oncall_relay::ack::slack::sign(signed_with, ts, body.as_bytes()),
            )
            .body(body)
    };
    assert_eq!(status_of(click("U0ALICE", "guessed", 0)).await, 403);
    assert_eq!(
        status_of(click("U0ALICE", "slack-signing", 600)).await,
        403,
        "replayed"
    );
    assert_eq!(status_of(click("U0BOB", "slack-signing", 0)).await, 200);
    assert_eq!(status_of(click("U0ALICE", "slack-signing", 0)).await, 200);
    let log = wait_for(std::time::Duration::from_secs(10), || async {
        let log = actions(&app).await;
        (log.len() >= 2).then_some(log)
    })
    .await;
    let mut outcomes: Vec<(String, String)> = log
        .iter()
        .map(|a| (a.email.clone(), a.outcome.clone()))
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("".to_string(), "unknown-sender".to_string()),
            ("alice@example.com".to_string(), "done".to_string())
        ]
    );
    assert_eq!(
        acted(&oncall),
        [format!("/api/v1/alert_groups/{GROUP}/acknowledge")]
    );
    // The app's `/oncall` slash command posts to the same URL, signed the same way.
    let command = |member: &str| {
        let body = serde_urlencoded::to_string([("command", "/oncall"), ("user_id", member)])
            .expect("form");
        let ts = oncall_relay::store::now_ms() / 1000;
        let request = app
            .client
            .post(app.url("/hooks/slack/chat"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("X-Slack-Request-Timestamp", ts.to_string())
            .header(
                "X-Slack-Signature",
                oncall_relay::ack::slack::sign("slack-signing", ts, body.as_bytes()),
            )
            .body(body);
        async move { json_of(request.send().await.expect("sent")).await }
    };
    let (status, answer) = command("U0ALICE").await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"response_type": "ephemeral", "text": "No schedules are tracked."})
    );
    let (_, stranger) = command("U0BOB").await;
    assert_eq!(
        stranger["text"],
        "Only people in the relay's directory can ask."
    );
    app.stop().await;
}
db_test!(slack_buttons_act_for_the_paged_person_only);

/// Adds the admin token `admin` and the schedule `platform` read from `ical_url`, polled
/// every 100 ms.
fn with_platform_schedule(s: &mut oncall_relay::config::Settings, ical_url: &str) {
    s.app.admin_token = oncall_relay::config::Tokens(vec![Secret("admin".into())]);
    s.grafana.oncall.schedule_poll_interval = std::time::Duration::from_millis(100);
    let platform = oncall_relay::config::ScheduleSettings {
        name: "Platform".into(),
        ical_url: ical_url.to_string(),
        ..Default::default()
    };
    s.grafana
        .oncall
        .schedules
        .insert("platform".into(), platform);
}

async fn who_is_on_call_answers_in_telegram_and_the_admin_api(db: TestDb) {
    use crate::schedules::{CalendarServer, calendar};
    let oncall = Fake::start().await;
    let (telegram, api_base) = FakeTelegram::start().await;
    let ical = CalendarServer::start(calendar(&["alice@example.com"])).await;
    let mut s = ack_settings(&db, &oncall);
    with_platform_schedule(&mut s, &ical.url);
    s.plugin.backends.insert("tg".into(), bot(api_base));
    s.plugin.backends.insert(
        "mm".into(),
        BackendSettings::Mattermost(oncall_relay::config::MattermostSettings {
            url: Secret(oncall.url.clone()),
            command_token: Some(Secret("mm-command-token".into())),
            ..Default::default()
        }),
    );
    let app = TestApp::spawn(s).await;
    app.add_user_with_contacts("alice@example.com", &[("telegram", "1001")])
        .await;
    let listed = wait_for(std::time::Duration::from_secs(10), || async {
        let page = on_call_page(&app).await;
        (page["results"][0]["people"][0]["key"] == json!("alice@example.com")).then_some(page)
    })
    .await;
    assert_eq!(listed["results"][0]["name"], "Platform");
    assert_eq!(listed["results"][0]["state"], "current");
    // Alice's shift ends in an hour, and nobody follows her.
    assert_eq!(listed["results"][0]["next"]["people"], json!([]));
    let until = listed["results"][0]["people"][0]["shift_end"].as_i64();
    assert_eq!(listed["results"][0]["next"]["at"].as_i64(), until);

    telegram.push(json!({"update_id": 1, "message": {
        "message_id": 9, "chat": {"id": 1001}, "from": {"id": 1001}, "text": "/oncall"
    }}));
    let answer = telegram.wait_sent("sendMessage", 1).await;
    let text = answer[0]["text"].as_str().expect("text");
    assert!(text.starts_with("Platform: "), "{text}");
    assert!(text.contains("(until "), "{text}");
    assert!(text.contains("; next: nobody from "), "{text}");

    // Mattermost's slash command, with its token; a wrong one gets nothing.
    let slash = |token: &str| {
        let body = serde_urlencoded::to_string([
            ("token", token),
            ("command", "/oncall"),
            ("text", ""),
            ("user_name", "alice"),
        ])
        .expect("form");
        app.client
            .post(app.url("/hooks/mattermost/mm/command"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let (status, answer) = json_of(slash("mm-command-token").send().await.expect("sent")).await;
    assert_eq!(
        (status, &answer["response_type"]),
        (200, &json!("ephemeral"))
    );
    assert!(
        str_of(&answer["text"]).starts_with("Platform: "),
        "{answer}"
    );
    let (status, refused) = json_of(slash("guess").send().await.expect("sent")).await;
    assert_eq!(
        (status, refused),
        (403, json!({"detail": "Invalid token."}))
    );
    let other = app.client.post(app.url("/hooks/mattermost/tg/command"));
    assert_eq!(status_of(other).await, 404);
    app.stop().await;
}
db_test!(who_is_on_call_answers_in_telegram_and_the_admin_api);

async fn mattermost_buttons_act_for_the_paged_member_only(db: TestDb) {
    let oncall = Fake::start().await;
    let chat = Fake::start().await;
    let s = linked_ack_settings(&db, &oncall);
    let hook = BackendSettings::Mattermost(oncall_relay::config::MattermostSettings {
        url: Secret(chat.url.clone()),
        timeout: std::time::Duration::from_secs(2),
        ..Default::default()
    });
    let (app, _) = paged_through(s, "mm", hook, ("mattermost", "@alice")).await;
    let post = chat.first_json().await;
    let button = &post["attachments"][0]["actions"][0];
    assert_eq!(button["name"], "Acknowledge");
    assert_eq!(
        button["integration"]["url"],
        format!("{PUBLIC}/hooks/mattermost")
    );
    let click = |user: &str| {
        let body = json!({"user_name": user, "context": button["integration"]["context"].clone()});
        let client = app.client.clone();
        let url = app.url("/hooks/mattermost");
        async move { json_of(client.post(url).json(&body).send().await.expect("sent")).await }
    };
    let (status, stranger) = click("bob").await;
    assert_eq!(status, 200);
    assert!(stranger.get("update").is_none(), "{stranger}");
    assert!(
        oncall.requests().is_empty(),
        "a stranger's click does nothing"
    );
    let (_, done) = click("alice").await;
    assert_eq!(done["ephemeral_text"], "#17 acknowledged.");
    assert_eq!(
        done["update"]["props"]["attachments"][0]["text"],
        "#17 acknowledged."
    );
    assert_eq!(
        oncall.requests()[0].uri.path(),
        format!("/api/v1/alert_groups/{GROUP}/acknowledge")
    );
    let (again, _) = click("alice").await;
    assert_eq!(again, 410, "a button works once");
    let forged = json!({"user_name": "alice", "context": {"token": "x.y"}});
    let status = status_of(app.client.post(app.url("/hooks/mattermost")).json(&forged)).await;
    assert_eq!(status, 403);
    app.stop().await;
}
db_test!(mattermost_buttons_act_for_the_paged_member_only);

/// A fake OnCall whose public API lists two pages of schedules and their users; requests
/// without the relay's token get 403.
async fn oncall_with_schedules() -> String {
    use axum::extract::{Path, Query};
    use axum::http::HeaderMap;
    use axum::routing::get;
    fn authorised(h: &HeaderMap) -> bool {
        h.get("authorization").and_then(|v| v.to_str().ok()) == Some("relay-api-token")
    }
    let schedules = |h: HeaderMap, Query(q): Query<std::collections::HashMap<String, String>>| async move {
        if !authorised(&h) {
            return (axum::http::StatusCode::FORBIDDEN, axum::Json(json!({}))).into_response();
        }
        let page = q.get("page").map(String::as_str).unwrap_or("1");
        axum::Json(match page {
            "1" => json!({"count": 3, "next": "https://elsewhere.example/api/v1/schedules/?page=2", "results": [
                {"id": "SPLATFORM1", "name": "Platform", "on_call_now": ["UBOB1"]},
                {"id": "SWEB1", "name": "Web", "on_call_now": ["UALICE1", "UBOB1"]},
            ]}),
            _ => json!({"count": 3, "next": null, "results": [
                {"id": "SNIGHT1", "name": "Nights", "on_call_now": []},
            ]}),
        })
        .into_response()
    };
    let users = |h: HeaderMap, Path(id): Path<String>| async move {
        let found = match id.as_str() {
            "UALICE1" => json!({"id": id, "email": "alice@example.com", "username": "alice"}),
            "UBOB1" => json!({"id": id, "email": "bob@example.net", "username": "bob"}),
            _ => return axum::http::StatusCode::NOT_FOUND.into_response(),
        };
        if !authorised(&h) {
            return axum::http::StatusCode::FORBIDDEN.into_response();
        }
        axum::Json(found).into_response()
    };
    let app = axum::Router::new()
        .route("/api/v1/schedules/", get(schedules))
        .route("/api/v1/users/{id}/", get(users));
    format!("http://{}", serve_loopback(app).await)
}

use axum::response::IntoResponse;

async fn who_is_on_call_includes_oncalls_own_schedules(db: TestDb) {
    use crate::schedules::{CalendarServer, calendar};
    let oncall = oncall_with_schedules().await;
    let ical = CalendarServer::start(calendar(&["alice@example.com"])).await;
    let mut s = settings(&db);
    s.grafana.oncall.url = oncall;
    s.grafana.oncall.header_token = Secret("relay-api-token".into());
    with_platform_schedule(&mut s, &ical.url);
    let app = TestApp::spawn_with_alice(s).await;
    let listed = wait_for(std::time::Duration::from_secs(10), || async {
        let page = on_call_page(&app).await;
        let alice = &page["results"][0]["people"][0];
        (alice["key"] == json!("alice@example.com") && alice["user_id"].is_string()).then_some(page)
    })
    .await;
    let seen: Vec<(String, String, Vec<String>)> = listed["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|s| {
            let people = s["people"]
                .as_array()
                .expect("people")
                .iter()
                .map(|p| p["name"].as_str().unwrap_or("").to_string())
                .collect();
            (
                s["name"].as_str().unwrap_or("").to_string(),
                s["source"].as_str().unwrap_or("").to_string(),
                people,
            )
        })
        .collect();
    // The tracked "Platform" wins over OnCall's of the same name; Alice is named as the
    // directory names her (by email: it has no name for her), Bob (not in it) by his OnCall
    // username.
    let alice = "alice@example.com".to_string();
    assert_eq!(
        seen,
        [
            ("Platform".into(), "calendar".into(), vec![alice.clone()]),
            (
                "Web".into(),
                "oncall".into(),
                vec![alice.clone(), "bob".to_string()]
            ),
            ("Nights".into(), "oncall".into(), vec![]),
        ],
        "{listed}"
    );
    assert_eq!(listed["results"][1]["schedule"], "oncall:SWEB1");
    app.stop().await;
}
db_test!(who_is_on_call_includes_oncalls_own_schedules);

/// `GET /api/admin/v1/oncall` with the admin token `admin`.
async fn on_call_page(app: &TestApp) -> Value {
    let (status, page) = json_of(
        app.client
            .get(app.url("/api/admin/v1/oncall"))
            .header("Authorization", "Bearer admin")
            .send()
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page
}
