//! `users` and `devices`: managing people and their devices without SQL.

use super::{listed_user, user_with_email, users_import, users_list, users_update};
use crate::db_test;
use crate::helpers::*;

async fn users_can_be_managed_without_sql(db: TestDb) {
    users_add(
        &db,
        "Ann@Example.com",
        &[
            "--phone",
            "+49 30 123456",
            "--role",
            "admin",
            "--name",
            "Ann",
        ],
    );
    let out = relay(&db, &["users", "add", "--email", "ann@example.com"]);
    assert!(
        !out.status.success(),
        "duplicate email (case-insensitive) refused"
    );
    let bad_phone = ["--email", "bad@example.com", "--phone", "12ab"];
    let out = relay(&db, &[&["users", "add"][..], &bad_phone].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("phone_number"), "names the field: {err}");

    let list = users_list(&db);
    assert_eq!(list.as_array().expect("list").len(), 1);
    assert_eq!(list[0]["phone_number"], "+4930123456");
    assert_eq!(list[0]["role"], "admin");

    ok(&users_update(
        &db,
        "ann@example.com",
        &["--no-phone", "--role", "observer"],
    ));
    let list = users_list(&db);
    assert!(list[0]["phone_number"].is_null());
    assert_eq!(list[0]["role"], "viewer");

    let dir = tempfile::tempdir().expect("dir");
    let csv = "email,phone,name,role,id\nann@example.com,+4930654321,Ann,admin,\nbob@example.com,+12025550143,Bob,user,legacy-42\n";
    let first = users_import(&db, &dir, "users.csv", csv);
    assert!(first.contains("1 added, 1 updated, 0 unchanged"), "{first}");
    let again = users_import(&db, &dir, "users.csv", csv);
    assert!(
        again.contains("0 added, 0 updated, 2 unchanged"),
        "idempotent: {again}"
    );

    let yaml = "- email: carol@example.com\n  phone_number: '+33 1 23 45 67 89'\n";
    users_import(&db, &dir, "users.yml", yaml);

    let list = users_list(&db);
    let bob = user_with_email(&list, "bob@example.com");
    assert_eq!(bob["id"], "legacy-42", "imported id kept");
    assert_eq!(bob["role"], "editor");
    assert_eq!(list.as_array().expect("list").len(), 3);

    let contacts = ["telegram=12345", "email=bob@work.example"];
    ok(&users_update(
        &db,
        "bob@example.com",
        &["--contact", contacts[0], "--contact", contacts[1]],
    ));
    let bob = listed_user(&db, "bob@example.com");
    assert_eq!(
        bob["contacts"],
        serde_json::json!({"email": "bob@work.example", "telegram": "12345"})
    );
    let out = users_update(&db, "bob@example.com", &["--contact", "bad key=1"]);
    assert!(!out.status.success(), "contact names are checked");

    ok(&relay(&db, &["users", "remove", "legacy-42"]));
    let list = users_list(&db);
    assert_eq!(list.as_array().expect("list").len(), 2);
}
db_test!(users_can_be_managed_without_sql);

async fn users_add_names_the_user_by_email_or_given_name(db: TestDb) {
    let out = users_add(&db, "alice@example.com", &[]);
    assert!(out.starts_with("added alice@example.com "), "{out}");
    let out = users_add(&db, "bob@example.com", &["--name", "Bob B"]);
    assert!(out.starts_with("added Bob B <bob@example.com> "), "{out}");
}
db_test!(users_add_names_the_user_by_email_or_given_name);

async fn devices_can_be_assigned_listed_and_removed(db: TestDb) {
    users_add(&db, "ann@example.com", &["--phone", "+4930123456"]);
    let out = relay(
        &db,
        &["devices", "add", "tok-1", "--user", "nobody@example.com"],
    );
    assert!(!out.status.success(), "unknown user refused");
    ok(&relay(
        &db,
        &[
            "devices",
            "add",
            "tok-1",
            "--user",
            "ann@example.com",
            "--label",
            "Ann's phone",
        ],
    ));
    let list = relay_json(&db, &["devices", "list", "--json"]);
    assert_eq!(list.as_array().expect("list").len(), 1);
    assert_eq!(list[0]["token"], "tok-1");
    assert_eq!(list[0]["label"], "Ann's phone");
    assert!(str_of(&list[0]["user_id"]).starts_with('U'));
    ok(&relay(&db, &["devices", "remove", "tok-1"]));
    let list = relay_json(&db, &["devices", "list", "--json"]);
    assert_eq!(list.as_array().expect("list").len(), 0);
    let out = relay(&db, &["integrations", "list"]);
    assert!(out.status.success());
}
db_test!(devices_can_be_assigned_listed_and_removed);

async fn a_language_is_set_by_add_update_and_csv_import(db: TestDb) {
    let greta = ["--language", "DE", "--timezone", "Europe/Berlin"];
    users_add(&db, "greta@example.com", &greta);
    let language = || listed_user(&db, "greta@example.com")["language"].clone();
    assert_eq!(language(), "de");
    ok(&users_update(
        &db,
        "greta@example.com",
        &["--language", "pt_br"],
    ));
    assert_eq!(language(), "pt-BR");
    let out = users_update(&db, "greta@example.com", &["--language", "Deutsch"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid language"));

    let dir = tempfile::tempdir().expect("dir");
    let csv = "email,phone,language,timezone\nolga@example.com,+380441234567,uk,Europe/Kyiv\n";
    users_import(&db, &dir, "users.csv", csv);
    let olga = listed_user(&db, "olga@example.com");
    assert_eq!(
        (olga["language"].as_str(), olga["timezone"].as_str()),
        (Some("uk"), Some("Europe/Kyiv"))
    );
}
db_test!(a_language_is_set_by_add_update_and_csv_import);
