#!/usr/bin/env bash
# Console pages with 10,000 people and 100,000 notifications (SQLite): each page fetched
# REQUESTS times, one at a time, by an admin session; p50, p95 and max of curl's total time.
#
# Run from anywhere:   bash bench/console.sh
# Knobs (environment): PROFILE (release; `debug` reuses the test build), PEOPLE (10000),
# NOTIFICATIONS (100000), REQUESTS (100), PORT (18990).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROFILE=${PROFILE:-release}
PEOPLE=${PEOPLE:-10000}
NOTIFICATIONS=${NOTIFICATIONS:-100000}
REQUESTS=${REQUESTS:-100}
PORT=${PORT:-18990}
cd "$ROOT"
if [ "$PROFILE" = release ]; then
    cargo build --release --bin oncall-relay >&2
    RELAY=${CARGO_TARGET_DIR:-$ROOT/target}/release/oncall-relay
else
    cargo build --bin oncall-relay >&2
    RELAY=${CARGO_TARGET_DIR:-$ROOT/target}/debug/oncall-relay
fi
TMP=$(mktemp -d)
SERVER=
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

cat >"$TMP/relay.yml" <<YAML
app:
  port: 127.0.0.1:$PORT
  auth_token: bench-token-0123
  admin_token: bench-admin-0123
  log_level: warn
db:
  driver: sqlite
  path: $TMP/relay.db
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
sqlite3 "$TMP/relay.db" <<SQL
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $NOTIFICATIONS)
INSERT INTO notifications (kind, user_id, email, name, phone_number, message, status, attempts, backend, created_at, updated_at, finished_at)
SELECT CASE i % 2 WHEN 0 THEN 'call' ELSE 'sms' END,
       (SELECT public_id FROM directory_users WHERE id = 1 + i % $PEOPLE),
       printf('person%05d@example.com', 1 + i % $PEOPLE), 'Person', '+4930123456', 'Alert ' || i,
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
ID=$(sqlite3 "$TMP/relay.db" "SELECT public_id FROM directory_users WHERE email = 'person05000@example.com'")

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
    "/console/status"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -b "$JAR" "$BASE$path")
    [ "$code" = 200 ] || { echo "$path answered $code" >&2; exit 1; }
    for _ in $(seq 1 "$REQUESTS"); do
        curl -s -o /dev/null -w '%{time_total}\n' -b "$JAR" "$BASE$path"
    done | sort -n | awk -v path="$path" '{ t[NR] = $1 * 1000 } END {
        printf "%-58s %8.1f %8.1f %8.1f\n", path, t[int(NR * 0.5)], t[int(NR * 0.95)], t[NR] }'
done
