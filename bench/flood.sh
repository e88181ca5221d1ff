#!/usr/bin/env bash
# make_call under floods: POST /api/v1/make_call alone, then beside a flood of /healthz (the
# HTTP stack alone, for reference), of /metrics scrapes, of random (unknown) heartbeat links
# and of make_call for unknown users (refused, and each refusal put on record). One JSON line of loadgen results per run, on stdout. The load generator
# shares the server's cores, so every flood takes CPU from make_call; compare each flood with
# the /healthz one.
#
# Run from anywhere:   bash bench/flood.sh
# Knobs (environment): DB (sqlite | postgres), PG_URL (postgres://postgres@127.0.0.1:5432),
# PROFILE (release | debug: which build of the server and the load generator; debug skips
# the slow release build and gives lower but comparable figures), BIN (a server binary to
# measure instead of this tree's), USERS (1000), HISTORY (delivered notifications already in
# the database, 200000), CALLERS (16), FLOODERS (128), DURATION (10s), WARMUP (2s), TARGETS
# (the floods to run: "healthz metrics heartbeat-link refused").

set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DB=${DB:-sqlite}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PROFILE=${PROFILE:-release}
USERS=${USERS:-1000}
HISTORY=${HISTORY:-200000}
CALLERS=${CALLERS:-16}
FLOODERS=${FLOODERS:-128}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
TARGETS=${TARGETS:-healthz metrics heartbeat-link refused}

log() { printf '[flood %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

cargo_flags=()
[[ $PROFILE == release ]] && cargo_flags=(--release)
(cd "$ROOT" && cargo build -q "${cargo_flags[@]}" --bin oncall-relay --example loadgen)
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BIN=${BIN:-$TARGET_DIR/$PROFILE/oncall-relay}
LOADGEN=$TARGET_DIR/$PROFILE/examples/loadgen

WORK=$(mktemp -d "${TMPDIR:-/tmp}/oncall-flood.XXXXXX")
TOKEN=flood-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
SERVER_PID=""
PG_DB=""
cleanup() {
    [[ -n $SERVER_PID ]] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [[ -n $PG_DB ]] && psql "$PG_URL/postgres" -qAt -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

case $DB in
sqlite)
    env_db=(ONCALL_RELAY_DB__DRIVER=sqlite "ONCALL_RELAY_DB__PATH=$WORK/flood.db")
    history_sql="WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $HISTORY) INSERT INTO notifications (kind, message, status, created_at, updated_at) SELECT 'call', 'old', 'delivered', 1, 1 FROM n"
    run_sql() { python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=10); c.execute(sys.argv[2]); c.commit()' "$WORK/flood.db" "$1"; }
    ;;
postgres)
    PG_DB=flood_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
    psql "$PG_URL/postgres" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE $PG_DB" >/dev/null
    env_db=(ONCALL_RELAY_DB__DRIVER=postgres "ONCALL_RELAY_DB__URL=$PG_URL/$PG_DB")
    history_sql="INSERT INTO notifications (kind, message, status, created_at, updated_at) SELECT 'call', 'old', 'delivered', 1, 1 FROM generate_series(1, $HISTORY)"
    run_sql() { psql "$PG_URL/$PG_DB" -qAt -v ON_ERROR_STOP=1 -c "$1" >/dev/null; }
    ;;
*)
    echo "DB must be sqlite or postgres" >&2
    exit 2
    ;;
esac

seq 0 $((USERS - 1)) | awk 'BEGIN { print "email,phone" } { printf "u%d@flood.example,+4930%07d\n", $1, 1000000 + $1 }' >"$WORK/users.csv"
(cd "$WORK" && env "${env_db[@]}" "$BIN" users import "$WORK/users.csv" >/dev/null)
run_sql "$history_sql"

(cd "$WORK" && exec env "${env_db[@]}" ONCALL_RELAY_APP__AUTH_TOKEN="$TOKEN" \
    "$BIN" serve --port "127.0.0.1:$PORT" --log-level warn >/dev/null 2>"$WORK/server.err") &
SERVER_PID=$!
"$LOADGEN" --wait-ready --since-ns "$(date +%s%N)" --url "$BASE/healthz" >/dev/null

calls() { # calls NAME: make_call load, one JSON line
    "$LOADGEN" --concurrency "$CALLERS" --duration "$DURATION" --warmup "$WARMUP" \
        --url "$BASE/api/v1/make_call" --method POST --header "Authorization: $TOKEN" \
        --users "$USERS" --body-template 'email=u{n}%40flood.example&message=Flood+call+{i}' |
        sed "s|^|$1: |"
}
flood() { # flood URL [LOADGEN ARGS...]: load for as long as the calls run, in the background
    "$LOADGEN" --concurrency "$FLOODERS" --duration "$DURATION" --warmup "$WARMUP" \
        --timeout 30s --url "$@" >"$WORK/flood.json" &
    FLOOD_PID=$!
}
count_sql() { # count_sql SQL: one number
    case $DB in
    sqlite) python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1], timeout=10).execute(sys.argv[2]).fetchone()[0])' "$WORK/flood.db" "$1" ;;
    postgres) psql "$PG_URL/$PG_DB" -qAt -c "$1" ;;
    esac
}

log "server $BIN on $DB, $USERS users, $HISTORY old notifications"
calls "make_call alone"
# /healthz touches nothing but the HTTP stack: what any flood costs on these cores.
for target in $TARGETS; do
    case $target in
    healthz) flood "$BASE/healthz" ;;
    metrics) flood "$BASE/metrics" ;;
    heartbeat-link) flood "$BASE/integrations/v1/formatted_webhook/random{i}x/heartbeat/" ;;
    refused) flood "$BASE/api/v1/make_call" --method POST --header "Authorization: $TOKEN" \
        --body-template 'email=nobody{i}%40flood.example&message=Flood+call+{i}' ;;
    esac
    calls "make_call beside a $target flood"
    wait "$FLOOD_PID"
    sed "s|^|  the $target flood: |" "$WORK/flood.json"
    if [[ $target == refused ]]; then
        sleep 1
        dropped=$(curl -s "$BASE/metrics" | awk '/^oncall_relay_refusals_dropped_total/ { n += $2 } END { print n + 0 }')
        echo "  the refused flood: $(count_sql "SELECT count(*) FROM notifications WHERE status = 'refused'") refusals on record, $dropped dropped"
    fi
done
