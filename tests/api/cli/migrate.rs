//! `users import --from-emu-oncall`: moving users over from the Go service's table.

use super::{user_with_email, users_list};
use crate::helpers::*;

/// A fresh PostgreSQL database holding the Go service's `oncall_users` table.
async fn emu_oncall_database(rows: &str) -> PgDatabase {
    use sqlx::{Connection, Executor};
    let db = PgDatabase::create("ort_emu").await;
    let url = db.url.clone();
    let mut conn = sqlx::postgres::PgConnection::connect(&url)
        .await
        .expect("connect");
    conn.execute(sqlx::AssertSqlSafe(format!(
        "CREATE TYPE user_role AS ENUM ('user', 'observer', 'admin'); \
         CREATE TABLE oncall_users (id serial PRIMARY KEY, user_id varchar(15), name varchar(255), \
         username varchar(255), email varchar(255), phone_number varchar(20), active bool, \
         role user_role); \
         INSERT INTO oncall_users (user_id, name, username, email, phone_number, active, role) VALUES {rows}"
    )))
    .await
    .expect("fill oncall_users");
    conn.close().await.expect("close");
    db
}

async fn users_move_over_from_the_go_service_table(db: Db) {
    if skip_postgres() {
        return;
    }
    let db = TestDb::new(db).await;
    // Already in the relay: keeps its own id, takes the Go service's fields.
    users_add(&db, "eve@example.com", &[]);
    // Someone else already has this id: that row is skipped, and the rest still goes in
    // (on PostgreSQL a failed INSERT would have aborted the whole transaction).
    users_add(&db, "zed@example.com", &["--id", "UZED8"]);
    let source_db = emu_oncall_database(
        "('UANN1', 'Ann', 'ann', 'ann@example.com', '+49 30 123456', true, 'admin'), \
         ('UBOB2', 'Bob', 'bob', 'bob@example.com', '0012025550143', true, 'user'), \
         ('UCAR3', 'Carol', 'carol', 'carol@example.com', NULL, false, 'observer'), \
         ('UDAN4', 'Dan', 'dan', 'dan@example.com', '12345', true, 'user'), \
         ('UNOM5', 'No Mail', 'nomail', NULL, '+4930123457', true, 'user'), \
         ('UDUP6', 'Ann Again', 'ann2', 'ANN@example.com', '+4930123458', true, 'user'), \
         ('UEVE7', 'Eve', 'eve', 'eve@example.com', '+4930123459', true, 'admin'), \
         ('UZED8', 'Other', 'other', 'other@example.com', '+4930123460', true, 'user')",
    )
    .await;
    let import_from = |source: &str| relay(&db, &["users", "import", "--from-emu-oncall", source]);
    let first = ok(&import_from(&source_db.url));
    assert!(
        first.contains("(8 rows): 3 added, 1 updated, 0 unchanged, 4 skipped"),
        "{first}"
    );
    for (who, why) in [
        ("dan@example.com", "phone_number"),
        ("UNOM5", "missing email"),
        ("ANN@example.com", "duplicate email"),
        ("other@example.com", "UZED8"),
    ] {
        assert!(
            first
                .lines()
                .any(|l| l.contains("skipped") && l.contains(who) && l.contains(why)),
            "{who}: {why} in {first}"
        );
    }
    assert!(first.contains("UEVE7 is not applied"), "{first}");

    let list = users_list(&db);
    let user = |email: &str| user_with_email(&list, email);
    assert_eq!(list.as_array().expect("list").len(), 5);
    let ann = user("ann@example.com");
    assert_eq!(ann["id"], "UANN1", "user_id kept as the public id");
    assert_eq!(ann["phone_number"], "+4930123456");
    assert_eq!(ann["role"], "admin");
    assert_eq!(ann["name"], "Ann");
    let bob = user("bob@example.com");
    assert_eq!(bob["id"], "UBOB2");
    assert_eq!(bob["phone_number"], "+12025550143", "normalised to E.164");
    assert_eq!(bob["role"], "editor", "user → editor");
    let carol = user("carol@example.com");
    assert_eq!(carol["role"], "viewer", "observer → viewer");
    assert_eq!(carol["active"], false);
    assert!(carol["phone_number"].is_null());
    let eve = user("eve@example.com");
    assert_eq!(eve["phone_number"], "+4930123459");
    assert_eq!(eve["role"], "admin");

    let again = ok(&import_from(&source_db.url));
    assert!(
        again.contains("0 added, 0 updated, 4 unchanged, 4 skipped"),
        "idempotent: {again}"
    );
    let after = users_list(&db);
    assert_eq!(after, list, "a second run changes nothing");

    let out = import_from("postgres://postgres:s3cret-pw@127.0.0.1:1/none");
    assert!(!out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("s3cret-pw"),
        "the password is never repeated"
    );
}
/// The Go service's table is on PostgreSQL, so both variants need it (and their names end
/// in `postgres`, which is how `scripts/test` leaves them out when there is none).
mod users_move_over_from_the_go_service_table {
    use crate::helpers::Db;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn into_sqlite_from_postgres() {
        super::users_move_over_from_the_go_service_table(Db::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::users_move_over_from_the_go_service_table(Db::Postgres).await
    }
}
