#!/usr/bin/env bash
# Delivery under faults, on SQLite and PostgreSQL, with a release build (examples/faults.rs):
#   - crash: 64 clients send calls for 5 s, the server is killed with SIGKILL and started
#     again; how many notifications reached the webhook twice (same Idempotency-Key), beside
#     queue.concurrency, the most that may be repeated;
#   - stall: 100 SMS to a webhook that never answers (and, for comparison, one that answers),
#     then 200 calls at 20/s to a healthy webhook; p50/p99/max from a call's 200 to its
#     delivery.
#
# Run from anywhere:   bash bench/faults.sh
# Knobs (environment): PG_URL (default postgres://postgres@127.0.0.1:5432), DBS ("sqlite
# postgres"), RUNS (3 crash runs per database), CONCURRENCY (32).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
DBS=${DBS:-sqlite postgres}
RUNS=${RUNS:-3}
CONCURRENCY=${CONCURRENCY:-32}
cd "$ROOT"
cargo build --release --bin oncall-relay --example faults >&2
RELAY=$ROOT/target/release/oncall-relay
FAULTS=$ROOT/target/release/examples/faults
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# A fresh database for one run: flags for the example.
fresh() {
    local db=$1 name
    if [ "$db" = sqlite ]; then
        echo "--db-path $TMP/run-$RANDOM$RANDOM.db"
    else
        name=bench_faults_$RANDOM$RANDOM
        psql "$PG_URL/postgres" -qc "CREATE DATABASE $name" >/dev/null
        echo "$name" >>"$TMP/pg-databases"
        echo "--db-url $PG_URL/$name"
    fi
}

cleanup_pg() {
    [ -f "$TMP/pg-databases" ] || return 0
    while read -r name; do psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $name" >/dev/null || true; done <"$TMP/pg-databases"
}
trap 'cleanup_pg; rm -rf "$TMP"' EXIT

for db in $DBS; do
    for run in $(seq 1 "$RUNS"); do
        # shellcheck disable=SC2046
        echo "{\"db\": \"$db\", \"run\": $run, \"result\": $("$FAULTS" crash --relay "$RELAY" --concurrency "$CONCURRENCY" $(fresh "$db"))}"
    done
    for hang in "" --hang; do
        # shellcheck disable=SC2046
        echo "{\"db\": \"$db\", \"result\": $("$FAULTS" stall --relay "$RELAY" --concurrency "$CONCURRENCY" $hang $(fresh "$db"))}"
    done
done
