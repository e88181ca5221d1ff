use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::*;
use crate::directory::{Device, Role, User};
use crate::heartbeat::Integration;
use crate::notify::NotificationRecord;
use crate::notify::events::AttemptRecord;
use crate::schedules::{OnDuty, OnDutyPerson, Schedule};

fn doc() -> Value {
    serde_json::to_value(document()).expect("document serialises")
}

#[test]
fn openapi_lists_every_admin_route() {
    let doc = doc();
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("path item")
                .keys()
                .map(move |method| format!("{method} {path}"))
        })
        .collect();
    let served = [
        "get /users",
        "post /users",
        "get /users/{user}",
        "patch /users/{user}",
        "delete /users/{user}",
        "get /devices",
        "put /devices/{token}",
        "delete /devices/{token}",
        "get /integrations",
        "get /schedules",
        "post /schedules",
        "get /schedules/{key}",
        "delete /schedules/{key}",
        "get /events",
        "get /circuits",
        "get /circuits/changes",
        "get /oncall",
        "get /debug/pprof/profile",
        "get /debug/pprof/flamegraph",
        "get /openapi.json",
    ];
    let served: BTreeSet<String> = served.iter().map(|s| s.to_string()).collect();
    assert_eq!(documented, served);
    assert_eq!(
        doc["components"]["securitySchemes"]["adminToken"]["scheme"],
        "bearer"
    );
    assert_eq!(doc["servers"][0]["url"], "/api/admin/v1");
    let profile = &doc["paths"]["/debug/pprof/profile"]["get"]["responses"];
    for status in ["200", "403", "404", "501"] {
        assert!(profile[status].is_object(), "{status}: {profile}");
    }
    let get_user = &doc["paths"]["/users/{user}"]["get"];
    assert_eq!(get_user["parameters"][0]["name"], "user");
    let not_found = &get_user["responses"]["404"]["content"]["application/json"]["schema"];
    assert!(not_found["properties"]["detail"].is_object(), "{not_found}");
}

/// The properties a schema declares, and the keys a value of its type serialises to, agree.
fn assert_matches(doc: &Value, schema: &str, sample: impl Serialize) {
    let declared: BTreeSet<&String> = doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {schema} has no properties"))
        .keys()
        .collect();
    let value = serde_json::to_value(sample).expect("sample serialises");
    let sent: BTreeSet<&String> = value.as_object().expect("an object").keys().collect();
    assert_eq!(declared, sent, "schema {schema}");
}

#[test]
fn openapi_schemas_match_what_handlers_return() {
    let doc = doc();
    let user = User {
        seq: 1,
        id: "U1".into(),
        name: "Alice".into(),
        username: "alice".into(),
        email: "alice@example.com".into(),
        phone_number: Some("+4930123456".into()),
        active: true,
        role: Role::Admin,
        timezone: "UTC".into(),
        language: Some("de".into()),
        contacts: BTreeMap::from([("telegram".into(), "1".into())]),
        created_at: 1,
        updated_at: 2,
    };
    assert_matches(&doc, "User", &user);
    assert_matches(
        &doc,
        "Device",
        Device {
            token: "t".into(),
            user_id: Some("U1".into()),
            label: "phone".into(),
            first_seen_at: 1,
            last_seen_at: 2,
        },
    );
    assert_matches(
        &doc,
        "Integration",
        Integration {
            id: "I1".into(),
            name: "n".into(),
            kind: "formatted_webhook".into(),
            heartbeat_token: "secret".into(),
            state: "alive".into(),
            last_beat_at: Some(1),
            created_at: 1,
        },
    );
    let person = OnDutyPerson {
        key: "alice@example.com".into(),
        email: Some("alice@example.com".into()),
        user_id: Some("U1".into()),
        name: "Alice".into(),
        shift_end: 3,
    };
    let on_duty = OnDuty {
        people: BTreeMap::from([(person.key.clone(), person.clone())]),
        unknown: vec!["bob".into()],
        ambiguous: vec!["`sam` is the display name of 2 people".into()],
        warnings: vec!["TZID `Mars` is defined nowhere: its times are read as UTC".into()],
        next: Some(crate::schedules::NextDuty {
            at: 4,
            people: vec![person.clone()],
        }),
    };
    assert_matches(&doc, "OnDutyPerson", &person);
    assert_matches(&doc, "OnDuty", &on_duty);
    assert_matches(
        &doc,
        "Schedule",
        Schedule {
            id: 1,
            key: "primary".into(),
            name: "Primary".into(),
            ical_url: "/ical".into(),
            transport: "local".into(),
            callback_url: String::new(),
            source: "cli".into(),
            calendar_name: Some("Primary".into()),
            on_duty: Some(on_duty.keys()),
            detail: Some(on_duty),
            changed_at: Some(1),
            last_success_at: Some(2),
            last_error: Some("e".into()),
            last_error_at: Some(3),
            state: crate::schedules::StateStatus::LastGood,
        },
    );
    let attempt = AttemptRecord {
        attempt: 1,
        backend: "stdout".into(),
        outcome: "delivered".into(),
        error: Some("e".into()),
        started_at: 1,
        duration_ms: 2,
    };
    assert_matches(&doc, "AttemptRecord", &attempt);
    let record = NotificationRecord {
        id: 1,
        kind: "sms".into(),
        user_id: "U1".into(),
        email: "alice@example.com".into(),
        phone_number: Some("+4930123456".into()),
        message: "m".into(),
        status: "delivered".into(),
        attempts: 1,
        backend: Some("stdout".into()),
        answer: Some("answered".into()),
        last_error: None,
        created_at: 1,
        finished_at: Some(2),
        attempt_log: vec![attempt],
    };
    assert_matches(&doc, "NotificationRecord", &record);
    assert_matches(
        &doc,
        "EventsPage",
        tracking::EventsPage {
            count: 1,
            next_before: Some(1),
            results: vec![record],
        },
    );
}
