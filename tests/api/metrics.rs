//! `/metrics`: valid Prometheus text with the service's counters, histograms and gauges.

use crate::db_test;
use crate::helpers::*;

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

async fn metrics_parse_and_count_what_happened(db: Db) {
    let db = TestDb::new(db).await;
    let app = TestApp::spawn(settings(&db)).await;
    app.add_user("alice@example.com", Some("+4930123456")).await;
    let resp = app
        .post_fields(
            "/api/v1/make_call",
            &[("email", "alice@example.com"), ("message", "hi")],
        )
        .await;
    assert_eq!(resp.status().as_u16(), 200);
    app.wait_until_settled(1).await;
    let (_, created) = json_of(
        app.post_fields(
            "/api/v1/integrations/",
            &[
                ("type", "formatted_webhook"),
                ("name", "OnCall Cloud Heartbeat http://e"),
            ],
        )
        .await,
    )
    .await;
    let link = created["heartbeat"]["link"]
        .as_str()
        .expect("link")
        .to_string();
    let secret = link
        .trim_end_matches("/heartbeat/")
        .rsplit('/')
        .next()
        .expect("secret")
        .to_string();
    let path = format!(
        "/{}",
        link.split_once("://")
            .expect("url")
            .1
            .split_once('/')
            .expect("path")
            .1
    );
    assert_eq!(
        app.client
            .get(app.url(&path))
            .send()
            .await
            .expect("beat")
            .status()
            .as_u16(),
        200
    );

    let resp = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/plain")
    );
    let text = resp.text().await.expect("text");
    assert!(
        !text.contains(&secret),
        "heartbeat secrets never appear in metrics"
    );
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid exposition");

    let calls = value(
        &scrape,
        "oncall_relay_http_requests_total",
        &[
            ("route", "/api/v1/make_call"),
            ("method", "POST"),
            ("status", "200"),
        ],
    );
    assert_eq!(calls, Some(1.0), "{text}");
    assert_eq!(
        value(
            &scrape,
            "oncall_relay_notifications_accepted_total",
            &[("kind", "call")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &scrape,
            "oncall_relay_delivery_attempts_total",
            &[
                ("kind", "call"),
                ("backend", "stdout"),
                ("outcome", "delivered")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&scrape, "oncall_relay_queue_depth", &[("kind", "call")]),
        Some(0.0)
    );
    assert_eq!(value(&scrape, "oncall_relay_database_up", &[]), Some(1.0));
    assert_eq!(
        value(&scrape, "oncall_relay_schedule_callbacks_pending", &[]),
        Some(0.0)
    );
    let age = value(
        &scrape,
        "oncall_relay_heartbeat_age_seconds",
        &[("state", "alive")],
    )
    .expect("heartbeat age");
    assert!((0.0..60.0).contains(&age));
    assert!(
        scrape.samples.iter().any(
            |s| s.metric == "oncall_relay_delivery_latency_seconds_count"
                || s.metric == "oncall_relay_delivery_latency_seconds"
        ),
        "{text}"
    );
    app.stop().await;
}
db_test!(metrics_parse_and_count_what_happened);
