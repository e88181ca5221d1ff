//! `/metrics`: valid Prometheus text with the service's counters, histograms and gauges.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::{RngExt, SeedableRng};

use crate::db_test;
use crate::helpers::*;
use crate::schedules::{CalendarServer, calendar};

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

async fn metrics_parse_and_count_what_happened(db: TestDb) {
    let app = TestApp::spawn_with_alice(settings(&db)).await;
    app.call_alice("hi").await;
    app.wait_until_settled(1).await;
    let (_, created) = app
        .post_fields_json(
            "/api/v1/integrations/",
            &[
                ("type", "formatted_webhook"),
                ("name", "OnCall Cloud Heartbeat http://e"),
            ],
        )
        .await;
    let link = str_of(&created["heartbeat"]["link"]).to_string();
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
    assert_eq!(app.plain_get_status(&path).await, 200);

    // Database-backed gauges are sampled in the background: wait for a sample after the beat.
    let text = wait_for(Duration::from_secs(10), || async {
        let resp = app.plain_get("/metrics").await;
        assert_eq!(resp.status().as_u16(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .expect("ct")
                .starts_with("text/plain")
        );
        let text = resp.text().await.expect("text");
        text.contains("oncall_relay_heartbeat_age_seconds{")
            .then_some(text)
    })
    .await;
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

/// Checks what strict parsers insist on: each family has exactly one `# HELP` and one
/// `# TYPE` line, both before its samples, and its samples are contiguous. Returns the
/// families with their sample counts.
fn strict_families(text: &str) -> BTreeMap<String, usize> {
    let mut help: BTreeMap<String, usize> = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples: BTreeMap<String, usize> = BTreeMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut enter = |family: &str, current: &mut Option<String>| {
        if current.as_deref() != Some(family) {
            if let Some(previous) = current.take() {
                finished.insert(previous);
            }
            assert!(
                !finished.contains(family),
                "family {family} appears twice, not contiguous:\n{text}"
            );
            *current = Some(family.to_string());
        }
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("name").to_string();
            enter(&name, &mut current);
            *help.entry(name.clone()).or_default() += 1;
            assert_eq!(help[&name], 1, "second HELP for {name}:\n{text}");
            assert!(!types.contains_key(&name), "HELP after TYPE for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().expect("name").to_string();
            let kind = parts.next().expect("type").to_string();
            enter(&name, &mut current);
            assert!(
                types.insert(name.clone(), kind).is_none(),
                "second TYPE for {name}:\n{text}"
            );
        } else if line.starts_with('#') || line.trim().is_empty() {
            continue;
        } else {
            let metric = line
                .split(['{', ' '])
                .next()
                .expect("metric name")
                .to_string();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| metric.strip_suffix(suffix))
                .find(|base| types.get(*base).is_some_and(|t| t == "histogram"))
                .unwrap_or(&metric)
                .to_string();
            assert!(types.contains_key(&family), "sample before TYPE: {line}");
            assert_eq!(help.get(&family), Some(&1), "sample without HELP: {line}");
            enter(&family, &mut current);
            *samples.entry(family).or_default() += 1;
        }
    }
    for name in types.keys() {
        assert_eq!(help.get(name), Some(&1), "TYPE without HELP: {name}");
    }
    samples
}

async fn metrics_write_each_family_once(db: TestDb) {
    let cal = CalendarServer::start(calendar(&["alice"])).await;
    let mut s = settings(&db);
    s.grafana.oncall.schedule_poll_interval = Duration::from_millis(100);
    for key in ["team", "ops", "db"] {
        s.grafana.oncall.schedules.insert(
            key.into(),
            oncall_relay::config::ScheduleSettings {
                name: key.into(),
                ical_url: cal.url.clone(),
                ..Default::default()
            },
        );
    }
    let app = TestApp::spawn(s).await;
    for instance in ["http://a", "http://b"] {
        let (status, created) = app
            .post_fields_json(
                "/api/v1/integrations/",
                &[
                    ("type", "formatted_webhook"),
                    ("name", &format!("OnCall Cloud Heartbeat {instance}")),
                ],
            )
            .await;
        assert_eq!(status, 201);
        let link = created["heartbeat"]["link"].as_str().expect("link");
        let path = link.split_once("://").expect("url").1;
        let path = &path[path.find('/').expect("path")..];
        assert_eq!(app.plain_get_status(path).await, 200);
    }
    let text = wait_for(Duration::from_secs(10), || async {
        let text = app.plain_get_text("/metrics").await;
        let ready = text
            .matches("oncall_relay_schedule_last_success_age_seconds{")
            .count()
            == 3
            && text.matches("oncall_relay_heartbeat_age_seconds{").count() == 2;
        ready.then_some(text)
    })
    .await;
    let families = strict_families(&text);
    assert_eq!(
        families.get("oncall_relay_schedule_failing"),
        Some(&3),
        "{text}"
    );
    assert_eq!(
        families.get("oncall_relay_heartbeat_age_seconds"),
        Some(&2),
        "{text}"
    );
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid exposition");
    for name in [
        "oncall_relay_schedule_last_success_age_seconds",
        "oncall_relay_schedule_failing",
        "oncall_relay_heartbeat_age_seconds",
        "oncall_relay_http_requests_total",
    ] {
        assert!(
            scrape.docs.contains_key(name),
            "{name} has its HELP: {:?}",
            scrape.docs
        );
    }
    app.stop().await;
}
db_test!(metrics_write_each_family_once);

async fn metrics_labels_stay_bounded(db: TestDb) {
    let app = TestApp::spawn(settings(&db)).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_000);
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for i in 0..300 {
        let len = rng.random_range(3..10);
        let method: String = (0..len)
            .map(|_| UPPER[rng.random_range(0..UPPER.len())] as char)
            .collect();
        let path = if i % 2 == 0 {
            format!("/random/{i}/{method}")
        } else {
            "/healthz".to_string()
        };
        let status = app
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
                app.url(&path),
            )
            .send()
            .await
            .expect("answer")
            .status()
            .as_u16();
        assert!(status < 500, "{method} {path}: {status}");
    }
    let text = app.plain_get_text("/metrics").await;
    let families = strict_families(&text);
    let series = families["oncall_relay_http_requests_total"];
    assert!(series <= 4, "{series} series:\n{text}");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid exposition");
    for sample in scrape
        .samples
        .iter()
        .filter(|s| s.metric == "oncall_relay_http_requests_total")
    {
        let method = sample.labels.get("method").expect("method");
        assert!(
            ["GET", "other"].contains(&method),
            "method label {method}:\n{text}"
        );
        let route = sample.labels.get("route").expect("route");
        assert!(
            ["unmatched", "/healthz", "/metrics"].contains(&route),
            "route label {route}:\n{text}"
        );
    }
    app.stop().await;
}
db_test!(metrics_labels_stay_bounded);

async fn metrics_token_protects_the_scrape(db: TestDb) {
    let mut s = settings(&db);
    s.app.metrics_token = oncall_relay::config::Tokens(vec![oncall_relay::config::Secret(
        "scrape-token-0123456789".into(),
    )]);
    let app = TestApp::spawn(s).await;
    for header in [None, Some("Bearer wrong"), Some(TOKEN), Some("Bearer é€")] {
        let mut request = app.client.get(app.url("/metrics"));
        if let Some(h) = header {
            request = request.header("Authorization", h);
        }
        let (status, body) = json_of(request.send().await.expect("answer")).await;
        assert_eq!(status, 403, "{header:?}");
        assert_eq!(body["detail"], "Invalid token.");
    }
    let resp = app.get_as("scrape-token-0123456789", "/metrics").await;
    assert_eq!(resp.status().as_u16(), 200);
    let scraped = resp.text().await.expect("text");
    assert!(scraped.contains("# TYPE oncall_relay_database_up gauge"));
    app.stop().await;
}
db_test!(metrics_token_protects_the_scrape);

async fn scrape_flood_leaves_make_call_at_full_success(db: TestDb) {
    let mut s = settings(&db);
    s.dedup.window = Duration::ZERO;
    s.db.pool.max_open_connections = 4;
    let app = std::sync::Arc::new(TestApp::spawn(s).await);
    // A history of delivered notifications, as a relay has after months: a scrape that
    // scanned it would hold a connection make_call needs.
    let seed = match db.kind {
        Db::Sqlite => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) \
             INSERT INTO notifications (kind, message, status, created_at, updated_at) \
             SELECT 'call', 'old', 'delivered', 1, 1 FROM n"
        }
        Db::Postgres => {
            "INSERT INTO notifications (kind, message, status, created_at, updated_at) \
             SELECT 'call', 'old', 'delivered', 1, 1 FROM generate_series(1, 200000)"
        }
    };
    sqlx::query(seed)
        .execute(app.store.pool())
        .await
        .expect("history");
    for i in 0..10 {
        app.add_user(&format!("user{i}@example.com"), Some("+4930123456"))
            .await;
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let mut scrapers = Vec::new();
    for _ in 0..64 {
        let app = app.clone();
        let stop = stop.clone();
        scrapers.push(tokio::spawn(async move {
            let mut scrapes = 0u64;
            while !stop.is_cancelled() {
                let resp = app.client.get(app.url("/metrics")).send().await;
                if let Ok(resp) = resp {
                    assert_eq!(resp.status().as_u16(), 200);
                    let _ = resp.bytes().await;
                    scrapes += 1;
                }
            }
            scrapes
        }));
    }
    let mut calls = Vec::new();
    for worker in 0..8 {
        let app = app.clone();
        calls.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in 0..25 {
                let email = format!("user{}@example.com", (worker + n) % 10);
                let message = format!("flood {worker}-{n}");
                let resp = app
                    .post_fields(
                        "/api/v1/make_call",
                        &[("email", email.as_str()), ("message", message.as_str())],
                    )
                    .await;
                statuses.push(resp.status().as_u16());
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for c in calls {
        statuses.extend(c.await.expect("caller"));
    }
    stop.cancel();
    let mut scrapes = 0;
    for s in scrapers {
        scrapes += s.await.expect("scraper");
    }
    let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(failed.is_empty(), "make_call answers not 2xx: {failed:?}");
    assert_eq!(statuses.len(), 200);
    assert!(scrapes > 100, "only {scrapes} scrapes ran");
    let app = std::sync::Arc::into_inner(app).expect("sole owner");
    app.stop().await;
}
db_test!(scrape_flood_leaves_make_call_at_full_success);
