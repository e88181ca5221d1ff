//! The console in a real headless Chromium: sign in, edit a person, verify a phone number
//! with the code that reached a fake SMS gateway, open the profile link as OnCall builds it.

use super::*;
use crate::db_test;

/// Where screenshots for the README go when `RELAY_SCREENSHOTS` names a folder.
async fn screenshot(browser: &Browser, name: &str) {
    if let Ok(dir) = std::env::var("RELAY_SCREENSHOTS") {
        browser
            .screenshot(&std::path::Path::new(&dir).join(format!("{name}.png")))
            .await;
    }
}

db_test!(in_a_browser_an_admin_edits_a_person_and_verifies_a_phone);
async fn in_a_browser_an_admin_edits_a_person_and_verifies_a_phone(db: Db) {
    if skip_browser() {
        return;
    }
    let db = TestDb::new(db).await;
    let Console {
        gateway,
        app,
        alice,
    } = Console::start(&db, |s| s.app.path_prefix = "/relay".into()).await;
    let browser = Browser::start().await;

    // OnCall's link: `urljoin(info.url, "a/grafana-oncall-app/users?p=1&id=<id>")`.
    let link = format!(
        "{}/relay/a/grafana-oncall-app/users?p=1&id={}",
        app.base, alice.id
    );
    browser.goto(&link).await;
    assert!(
        browser.url().await.contains("/relay/console/signin?next="),
        "sign-in first"
    );
    screenshot(&browser, "signin").await;
    browser.fill("#token", ADMIN_TOKEN).await;
    browser.click("#token ~ button").await;
    // Back at the link after signing in.
    browser.wait_url(&link).await;
    browser.wait_text("alice@example.com").await;
    browser.wait_text("+4930123456").await;

    browser.click("a[href$='/edit']").await;
    browser.fill("#name", "Alice Liddell").await;
    browser.fill("#timezone", "Europe/Berlin").await;
    browser.fill("#route", "hook").await;
    browser.click("form.stack button[type=submit]").await;
    browser.wait_text("Alice Liddell").await;
    browser.wait_text("Europe/Berlin").await;
    let saved = app.directory.get(&alice.id).await.expect("alice");
    assert_eq!(
        (saved.name.as_str(), saved.timezone.as_str()),
        ("Alice Liddell", "Europe/Berlin")
    );

    browser.fill("#phone-number", "+49 30 765432").await;
    browser.click("form[action$='/phone'] button").await;
    let code = code_sent(&gateway).await;
    assert_eq!(
        gateway.requests().last().expect("sms").json()["phone"],
        "+4930765432"
    );
    browser.fill("#code", &code).await;
    browser.click("form[action$='/phone/confirm'] button").await;
    browser.wait_text("+4930765432 is verified").await;
    assert_eq!(
        app.phone_of(&alice.id).await.as_deref(),
        Some("+4930765432")
    );
    screenshot(&browser, "profile").await;
    if std::env::var("RELAY_SCREENSHOTS").is_ok() {
        browser.prefer_dark().await;
        screenshot(&browser, "profile-dark").await;
    }

    // The IRM app's form and the pre-2024 one lead to the same profile.
    for form in [
        format!(
            "{}/relay/a/grafana-irm-app/users?p=1&id={}",
            app.base, alice.id
        ),
        format!(
            "{}/relay/a/grafana-oncall-app/?page=users&p=1&id={}",
            app.base, alice.id
        ),
    ] {
        browser.goto(&form).await;
        browser.wait_text("Alice Liddell").await;
    }
    browser
        .goto(&format!("{}/relay/console/people", app.base))
        .await;
    screenshot(&browser, "people").await;
    browser
        .goto(&format!("{}/relay/console/events", app.base))
        .await;
    browser.wait_text("delivered").await;
    screenshot(&browser, "events").await;
    browser
        .goto(&format!("{}/relay/console/queue", app.base))
        .await;
    browser.wait_text("Retrying").await;
    screenshot(&browser, "queue").await;
    browser.quit().await;
    app.stop().await;
}

#[tokio::test]
async fn in_a_browser_a_person_signs_in_with_a_code_and_sends_a_test() {
    if skip_browser() {
        return;
    }
    let db = TestDb::new(Db::Sqlite).await;
    let Console {
        gateway,
        app,
        alice,
    } = Console::start(&db, |_| {}).await;
    let browser = Browser::start().await;
    browser
        .goto(&format!(
            "{}/a/grafana-oncall-app/users?p=1&id={}",
            app.base, alice.id
        ))
        .await;
    browser.fill("#email", "alice@example.com").await;
    browser.click("#email ~ button").await;
    let code = code_sent(&gateway).await;
    browser.fill("#code", &code).await;
    browser.click("#code ~ button").await;
    browser.wait_text("Verify a phone number").await;
    browser.click("button[value=sms]").await;
    browser.wait_text("Test sent").await;
    wait_for(std::time::Duration::from_secs(10), || async {
        let last = gateway.requests().last()?.json();
        last["message"]
            .as_str()?
            .starts_with("Test sms")
            .then_some(())
    })
    .await;
    browser.quit().await;
    app.stop().await;
}
