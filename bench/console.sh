#!/usr/bin/env bash
# Console pages with 10,000 people and 100,000 notifications: each page fetched REQUESTS
# times, one at a time, by an admin session; p50, p95 and max of curl's total time.
#
# Run from anywhere:   bash bench/console.sh              (SQLite)
#                      DB=postgres bash bench/console.sh  (a fresh database on PG_URL, dropped after)
# Knobs (environment): DB (sqlite), PG_URL (postgres://postgres@127.0.0.1:5432), PROFILE
# (release; `debug` reuses the test build), BIN (a binary to use instead of building), PEOPLE (10000), NOTIFICATIONS (100000),
# REQUESTS (100), PORT (18990).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROFILE=${PROFILE:-release}
PEOPLE=${PEOPLE:-10000}
NOTIFICATIONS=${NOTIFICATIONS:-100000}
REQUESTS=${REQUESTS:-100}
PORT=${PORT:-18990}
DB=${DB:-sqlite}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
cd "$ROOT"
if [ -n "${BIN:-}" ]; then
    RELAY=$BIN
elif [ "$PROFILE" = release ]; then
    cargo build --release --bin oncall-relay >&2
    RELAY=${CARGO_TARGET_DIR:-$ROOT/target}/release/oncall-relay
else
    cargo build --bin oncall-relay >&2
    RELAY=${CARGO_TARGET_DIR:-$ROOT/target}/debug/oncall-relay
fi
TMP=$(mktemp -d)
SERVER=
PG_DB=bench_console_$$
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
    [ "$DB" = postgres ] && psql -q "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT

case "$DB" in
sqlite)
    DB_YAML="  driver: sqlite
  path: $TMP/relay.db"
    sql() { sqlite3 "$TMP/relay.db"; }
    ;;
postgres)
    psql -q "$PG_URL/postgres" -c "CREATE DATABASE $PG_DB" >/dev/null
    DB_YAML="  driver: postgres
  url: $PG_URL/$PG_DB"
    sql() { psql -q -t -A "$PG_URL/$PG_DB"; }
    ;;
*) echo "DB must be sqlite or postgres" >&2; exit 2 ;;
esac

cat >"$TMP/relay.yml" <<YAML
app:
  port: 127.0.0.1:$PORT
  auth_token: bench-token-0123
  admin_token: bench-admin-0123
  log_level: warn
db:
$DB_YAML
queue:
  deliver: false
plugin:
  backend: stdout
YAML

{
    echo "email,name,phone_number,timezone"
    for i in $(seq 1 "$PEOPLE"); do
        printf 'person%05d@example.com,Person %05d,+4930%07d,Europe/Berlin\n' "$i" "$i" "$i"
    done
} >"$TMP/people.csv"
"$RELAY" -c "$TMP/relay.yml" users import "$TMP/people.csv" >/dev/null
if [ "$DB" = sqlite ]; then
    numbers="WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $NOTIFICATIONS)"
    email="printf('person%05d@example.com', 1 + i % $PEOPLE)"
else
    numbers="WITH n(i) AS (SELECT generate_series(1, $NOTIFICATIONS))"
    email="'person' || lpad((1 + i % $PEOPLE)::text, 5, '0') || '@example.com'"
fi
sql <<SQL
$numbers
INSERT INTO notifications (kind, user_id, email, name, phone_number, message, status, attempts, backend, created_at, updated_at, finished_at)
SELECT CASE i % 2 WHEN 0 THEN 'call' ELSE 'sms' END,
       (SELECT public_id FROM directory_users WHERE id = 1 + i % $PEOPLE),
       $email, 'Person', '+4930123456', 'Alert ' || i,
       CASE i % 50 WHEN 0 THEN 'failed' WHEN 1 THEN 'refused' ELSE 'delivered' END, 1, 'stdout',
       1700000000000 + i * 1000, 1700000000000 + i * 1000, 1700000000000 + i * 1000
FROM n;
SQL

"$RELAY" -c "$TMP/relay.yml" serve >"$TMP/serve.log" 2>&1 &
SERVER=$!
BASE=http://127.0.0.1:$PORT
for _ in $(seq 1 100); do curl -sf "$BASE/healthz" >/dev/null && break; sleep 0.1; done

JAR=$TMP/jar
CSRF=$(curl -s -c "$JAR" -b "$JAR" "$BASE/console/signin" | grep -o 'name="csrf" value="[^"]*"' | head -1 | sed 's/.*value="//;s/"$//')
curl -s -o /dev/null -c "$JAR" -b "$JAR" --data-urlencode "csrf=$CSRF" --data-urlencode "token=bench-admin-0123" "$BASE/console/signin"
ID=$(echo "SELECT public_id FROM directory_users WHERE email = 'person05000@example.com';" | sql)

printf '%s, %s people, %s notifications, %s requests a page\n' "$DB" "$PEOPLE" "$NOTIFICATIONS" "$REQUESTS"
printf '%-58s %8s %8s %8s\n' "page (ms)" p50 p95 max
for path in \
    "/console/people" \
    "/console/people?page=200" \
    "/console/people?q=person0999" \
    "/console/people?q=nobody-matches" \
    "/console/people/$ID" \
    "/a/grafana-oncall-app/users?p=1&id=$ID" \
    "/console/people/$ID/edit" \
    "/console/events" \
    "/console/events?status=refused" \
    "/console/events?user=person05000@example.com" \
    "/console/queue" \
    "/console/status"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -b "$JAR" "$BASE$path")
    [ "$code" = 200 ] || { echo "$path answered $code" >&2; exit 1; }
    for _ in $(seq 1 "$REQUESTS"); do
        curl -s -o /dev/null -w '%{time_total}\n' -b "$JAR" "$BASE$path"
    done | sort -n | awk -v path="$path" '{ t[NR] = $1 * 1000 } END {
        printf "%-58s %8.1f %8.1f %8.1f\n", path, t[int(NR * 0.5)], t[int(NR * 0.95)], t[NR] }'
done
