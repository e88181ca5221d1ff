#!/usr/bin/env bash
# Benchmark of oncall-relay on SQLite and PostgreSQL: one command, a Markdown table at the end.
#
# What it measures, for each database (a fresh SQLite file, a fresh PostgreSQL database
# bench_<random> that is dropped at the end), with 10,000 imported users and the default
# `stdout` backend (its output goes to /dev/null):
#   - GET /healthz requests/s at 64 clients (the HTTP stack alone, as a reference);
#   - GET /api/v1/users?page=3&short=true&roles=0&roles=1 requests/s and p99;
#   - POST /api/v1/make_call accepted (2xx) per second, p50 and p99, each request for another
#     of the 10,000 users; then that every 2xx answer left a row in `notifications`;
#   - the server's resident memory (VmRSS) when idle after start, and again after the load
#     once the delivery queue has drained;
#   - POST /mobile_app/v1/fcm_relay (the push relay) accepted per second, p50 and p99, a
#     Firebase message for one of 100 devices assigned to users, JSON body;
#   - time from process start to the first answered /healthz (median of 5 starts), beside the
#     same with a directory of 2 people (the in-run reference for start-up);
#   - GET /api/v1/info requests/s, as a share of /healthz;
#   - the delivery-vs-acceptance soak (SOAK, 60 s, on SOAK_DBS): make_call at 64 clients while
#     the backlog (rows still due) is sampled every second; accepted/s, delivered/s in the same
#     window, the largest backlog in seconds of work, make_call p99, and the drain time after;
#   - history (HISTORY rows, e.g. 1000000): make_call, a claim's query, `events list --user`
#     and a /metrics scrape on the table as it is, then again once HISTORY finished
#     notifications and their attempts are added, side by side.
# Every throughput row is printed beside its share of /healthz measured in the same run, and
# start-up beside the 2-person start: the machine may be busy, and only these ratios compare
# across runs. The 100,000-person variant: USERS=100000 bash bench/run.sh.
# Load: target/release/examples/loadgen (examples/loadgen.rs), closed loop, 64 keep-alive
# HTTP/1.1 connections, 2 s warm-up then 10 s measured. The load generator runs on the same
# machine as the server and the database, so all three share its cores.
#
# Run from anywhere:   bash bench/run.sh
# Needs: cargo, curl, python3, psql, and PostgreSQL reachable as PG_URL (trust auth).
# Knobs (environment): PG_URL (default postgres://postgres@127.0.0.1:5432), PG_PARAMS (appended
# to the database URL, e.g. '?sslmode=disable'), DBS ("sqlite postgres"), USERS (10000),
# CONCURRENCY (64), DURATION (10s), WARMUP (2s), STARTS (5), SOAK (60s; 0 skips it), SOAK_DBS
# ("postgres"), HISTORY (0: skipped), BIN and LOADGEN (binaries to use instead of building).
# ONCALL_RELAY_* variables set in your environment reach the server too (e.g.
# ONCALL_RELAY_QUEUE__WRITERS=4), except the db.* ones this script sets; the table lists them.
# Output: the table on stdout and in bench/results/<UTC time>.md (and latest.md), raw loadgen
# lines beneath it.

set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_PARAMS=${PG_PARAMS:-}
DBS=${DBS:-sqlite postgres}
USERS=${USERS:-10000}
CONCURRENCY=${CONCURRENCY:-64}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
STARTS=${STARTS:-5}
SOAK=${SOAK:-60s}
SOAK_DBS=${SOAK_DBS:-postgres}
HISTORY=${HISTORY:-0}
RESULTS_DIR=$ROOT/bench/results

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for tool in cargo curl python3; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
if [[ " $DBS " == *" postgres "* ]]; then
    command -v psql >/dev/null || die "psql is required for the PostgreSQL run (or set DBS=sqlite)"
fi

# ---------------------------------------------------------------------------------------------
# Build

TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
if [[ -n ${BIN:-} ]]; then
    # A given binary (e.g. an earlier build, to compare side by side): no build.
    [[ -x $BIN ]] || die "BIN=$BIN is not an executable"
else
    log "building (cargo build --release --bin oncall-relay --example loadgen)"
    (cd "$ROOT" && cargo build --release --bin oncall-relay --example loadgen)
    BIN=$TARGET_DIR/release/oncall-relay
fi
LOADGEN=${LOADGEN:-$TARGET_DIR/release/examples/loadgen}
# Other work on the machine skews every number: note how busy it was when measuring began.
LOADAVG_START=$(cut -d' ' -f1 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# State and cleanup

WORK=$(mktemp -d "${TMPDIR:-/tmp}/oncall-bench.XXXXXX")
TOKEN=bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
SERVER_PID=""
PG_DB=""
LAST_STOP_MS=""

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    local pid=$SERVER_PID
    SERVER_PID=""
    local t0=$EPOCHREALTIME
    kill -TERM "$pid" 2>/dev/null || return 0
    # Graceful shutdown drains the queue; give it 15 s, then force.
    for _ in $(seq 1500); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.01
    done
    if kill -KILL "$pid" 2>/dev/null; then
        log "WARNING: the server (pid $pid) ignored SIGTERM for 15 s and was killed"
    fi
    wait "$pid" 2>/dev/null || true
    LAST_STOP_MS=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
}

SMALL_DB=""
drop_small_db() {
    [[ -n $SMALL_DB ]] || return 0
    psql "$PG_URL/postgres" -qAt -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS $SMALL_DB WITH (FORCE)" >/dev/null || log "could not drop $SMALL_DB"
    SMALL_DB=""
}

drop_pg_db() {
    [[ -n $PG_DB ]] || return 0
    psql "$PG_URL/postgres" -qAt -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null || log "could not drop $PG_DB"
    PG_DB=""
}

cleanup() {
    stop_server
    drop_pg_db
    drop_small_db
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The server reads config/config.yml from its working directory when present: run it from
# the empty work directory so that only this script's settings apply.
server_env=()
set_db_env() { # sqlite FILE | postgres URL
    case $1 in
    sqlite) server_env=(ONCALL_RELAY_DB__DRIVER=sqlite "ONCALL_RELAY_DB__PATH=$2" ONCALL_RELAY_DB__URL=) ;;
    postgres) server_env=(ONCALL_RELAY_DB__DRIVER=postgres "ONCALL_RELAY_DB__URL=$2") ;;
    esac
}

relay() { # oncall-relay subcommand with the current database
    (cd "$WORK" && env "${server_env[@]}" "$BIN" "$@")
}

json() { # json FILE KEY: one field of a JSON object
    python3 -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$1" "$2"
}

rss_mib() {
    awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

median() {
    sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Starts the server in the background (SERVER_PID) and waits for /healthz; READY_MS is the
# time from just before the start to the first 2xx answer. Not to be called in $(...): the
# server must be this shell's child.
READY_MS=""
start_server() {
    local start_ns
    start_ns=$(date +%s%N)
    (cd "$WORK" && exec env "${server_env[@]}" "$BIN" serve --auth-token "$TOKEN" \
        --port "127.0.0.1:$PORT" --log-level warn >/dev/null 2>"$WORK/server.err") &
    SERVER_PID=$!
    if ! "$LOADGEN" --wait-ready --since-ns "$start_ns" --url "$BASE/healthz" \
        --ready-timeout 30s >"$WORK/ready.json"; then
        cat "$WORK/server.err" >&2 || true
        die "the server did not answer /healthz"
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited: $(cat "$WORK/server.err")"
    READY_MS=$(json "$WORK/ready.json" ready_ms)
}

to_ms() { # to_ms 2s|500ms|1m: a duration as milliseconds
    case $1 in
    *ms) echo "${1%ms}" ;;
    *s) echo $((${1%s} * 1000)) ;;
    *m) echo $((${1%m} * 60000)) ;;
    *) die "unsupported duration: $1" ;;
    esac
}

now_ms() { date +%s%3N; }

cpu_ticks() { # user + system clock ticks of a process
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# loadgen NAME ARGS...: runs a load against the server, keeps its JSON line as $WORK/NAME.json
# and the cores the server used meanwhile (CPU time / wall time) as CPU[NAME].
declare -A CPU
loadgen() {
    local name=$1 before after t0 t1
    shift
    before=$(cpu_ticks "$SERVER_PID")
    t0=$EPOCHREALTIME
    "$LOADGEN" --concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP" \
        --header "Authorization: $TOKEN" "$@" >"$WORK/$name.json"
    t1=$EPOCHREALTIME
    after=$(cpu_ticks "$SERVER_PID")
    CPU[$name]=$(awk -v d=$((after - before)) -v hz="$(getconf CLK_TCK)" -v a="$t0" -v b="$t1" \
        'BEGIN { printf "%.2f", d / hz / (b - a) }')
    log "$name (server used ${CPU[$name]} cores): $(cat "$WORK/$name.json")"
    printf '%s: %s\n' "$name" "$(cat "$WORK/$name.json")" >>"$WORK/raw.txt"
}

sql_exec() { # sql_exec DB_KIND TARGET STATEMENT: runs a writing statement
    case $1 in
    sqlite)
        python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=10); c.execute(sys.argv[2]); c.commit()' "$2" "$3"
        ;;
    postgres) psql "$2" -qAt -v ON_ERROR_STOP=1 -c "$3" >/dev/null ;;
    esac
}

sql() { # sql DB_KIND TARGET QUERY: the first row, columns separated by |
    case $1 in
    sqlite)
        python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=10); print("|".join("" if v is None else str(v) for v in c.execute(sys.argv[2]).fetchone()))' "$2" "$3"
        ;;
    postgres) psql "$2" -qAt -v ON_ERROR_STOP=1 -c "$3" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Users: u0..u{USERS-1}@bench.example, valid Berlin numbers +4930 1000000+i, mixed roles
# (80 % admin or editor, which the users page below filters on).

CSV=$WORK/users.csv
seq 0 $((USERS - 1)) | awk '
    BEGIN { print "email,phone,name,role" }
    { role = ($1 % 5 == 0) ? "admin" : ($1 % 5 == 4) ? "viewer" : "editor"
      printf "u%d@bench.example,+4930%07d,Bench User %d,%s\n", $1, 1000000 + $1, $1, role }' >"$CSV"

declare -A R # results by "db:metric"

bench_db() { # bench_db sqlite|postgres
    local db=$1 target
    case $db in
    sqlite)
        target=$WORK/bench.db
        set_db_env sqlite "$target"
        ;;
    postgres)
        PG_DB=bench_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
        psql "$PG_URL/postgres" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE $PG_DB" >/dev/null
        target=$PG_URL/$PG_DB$PG_PARAMS
        set_db_env postgres "$target"
        ;;
    esac
    log "== $db"

    local imported
    imported=$(relay users import "$CSV" 2>&1) || die "users import failed: $imported"
    log "$imported"
    [[ $imported == *": $USERS added,"* ]] || die "expected $USERS users added: $imported"
    # 100 mobile devices, bench-device-0..99, assigned to the first 100 users.
    sql_exec "$db" "$target" \
        "INSERT INTO devices (token, user_id, label, first_seen_at, last_seen_at) SELECT 'bench-device-' || (id - 1), public_id, 'bench', 0, 0 FROM directory_users WHERE id <= 100"

    # e. Start-up time, median of STARTS starts (the database is migrated and holds the users),
    # interleaved with starts on a database of its own that holds 2 people (the reference).
    local big_env=("${server_env[@]}") small_env
    case $db in
    sqlite) set_db_env sqlite "$WORK/small.db" ;;
    postgres)
        SMALL_DB=${PG_DB}_small
        psql "$PG_URL/postgres" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE $SMALL_DB" >/dev/null
        set_db_env postgres "$PG_URL/$SMALL_DB$PG_PARAMS"
        ;;
    esac
    head -3 "$CSV" >"$WORK/small.csv"
    relay users import "$WORK/small.csv" >/dev/null || die "users import (2 people) failed"
    small_env=("${server_env[@]}")
    local starts=() small_starts=()
    for _ in $(seq "$STARTS"); do
        server_env=("${big_env[@]}")
        start_server
        starts+=("$READY_MS")
        stop_server
        server_env=("${small_env[@]}")
        start_server
        small_starts+=("$READY_MS")
        stop_server
    done
    server_env=("${big_env[@]}")
    [[ $db == postgres ]] && drop_small_db
    R[$db:start_ms]=$(printf '%s\n' "${starts[@]}" | median)
    R[$db:start_small_ms]=$(printf '%s\n' "${small_starts[@]}" | median)
    log "start to first /healthz (ms): ${starts[*]} -> median ${R[$db:start_ms]}; with 2 people: ${small_starts[*]} -> ${R[$db:start_small_ms]}"

    start_server
    local pid=$SERVER_PID
    sleep 1
    R[$db:rss_idle]=$(rss_mib "$pid")

    # a. /healthz
    loadgen "$db-healthz" --url "$BASE/healthz"
    R[$db:healthz_rps]=$(json "$WORK/$db-healthz.json" rps)
    R[$db:healthz_err]=$(json "$WORK/$db-healthz.json" errors)

    # a2. info, which OnCall polls
    loadgen "$db-info" --url "$BASE/api/v1/info"
    R[$db:info_rps]=$(json "$WORK/$db-info.json" rps)

    # b. users page
    local users_url="$BASE/api/v1/users?page=3&short=true&roles=0&roles=1"
    local page
    page=$(curl -fsS -H "Authorization: $TOKEN" "$users_url") || die "users page failed"
    [[ $page == *'"results":[{"id":'* ]] || die "unexpected users page: ${page:0:300}"
    loadgen "$db-users" --url "$users_url"
    R[$db:users_rps]=$(json "$WORK/$db-users.json" rps)
    R[$db:users_p99]=$(json "$WORK/$db-users.json" p99_ms)
    R[$db:users_err]=$(json "$WORK/$db-users.json" errors)

    # c. make_call, after one checked by hand
    local answer
    answer=$(curl -fsS -H "Authorization: $TOKEN" --data 'email=u1@bench.example&message=bench+probe' \
        "$BASE/api/v1/make_call") || die "make_call failed"
    [[ $answer == '{}' ]] || die "unexpected make_call answer: $answer"
    loadgen "$db-make_call" --url "$BASE/api/v1/make_call" --method POST --users "$USERS" \
        --body-template 'email=u{n}%40bench.example&message=Bench+call+{n}'
    local f=$WORK/$db-make_call.json
    R[$db:call_rps]=$(json "$f" ok_rps)
    R[$db:call_p50]=$(json "$f" p50_ms)
    R[$db:call_p99]=$(json "$f" p99_ms)
    R[$db:call_max]=$(json "$f" max_ms)
    R[$db:call_err]=$(json "$f" errors)
    R[$db:call_err_counts]=$(json "$f" error_counts)
    local answered=$(($(json "$f" total_ok) + 1)) # + the probe

    # Wait for the delivery queue to drain, then d. RSS again and the durability check.
    local t0=$SECONDS pending
    while :; do
        pending=$(sql "$db" "$target" \
            "SELECT count(*) FROM notifications WHERE status IN ('queued', 'delivering')")
        [[ $pending == 0 ]] && break
        ((SECONDS - t0 < 300)) || die "$pending notifications still pending after 300 s"
        sleep 0.5
    done
    R[$db:drain_s]=$((SECONDS - t0))
    sleep 1
    R[$db:rss_after]=$(rss_mib "$pid")
    local rows delivered
    rows=$(sql "$db" "$target" "SELECT count(*) FROM notifications")
    delivered=$(sql "$db" "$target" "SELECT count(*) FROM notifications WHERE status = 'delivered'")
    # Delivery: rate from the first acceptance to the last delivery, and the longest wait.
    local span lag
    IFS='|' read -r span lag < <(sql "$db" "$target" \
        "SELECT max(finished_at) - min(created_at), max(finished_at - created_at) FROM notifications WHERE status = 'delivered'")
    R[$db:deliver_rps]=$(awk -v n="$delivered" -v ms="$span" 'BEGIN { printf "%.0f", (ms > 0 ? n * 1000 / ms : 0) }')
    R[$db:deliver_lag]=$(awk -v ms="$lag" 'BEGIN { printf "%.1f", ms / 1000 }')
    R[$db:cpu]="${CPU[$db-healthz]} / ${CPU[$db-users]} / ${CPU[$db-make_call]}"
    R[$db:rows]=$rows
    R[$db:answered]=$answered
    R[$db:delivered]=$delivered
    log "make_call on $db: $answered answered 2xx, $rows rows in notifications, $delivered delivered"
    [[ $rows == "$answered" ]] || log "WARNING: rows ($rows) != 2xx answers ($answered)"

    # e. push relay (JSON Firebase messages for assigned devices)
    loadgen "$db-push" --url "$BASE/mobile_app/v1/fcm_relay" --method POST --users 100 \
        --header 'Content-Type: application/json' \
        --body-template '{"token": "bench-device-{n}", "data": {"title": "Bench push {i}", "orgName": "Bench", "alertGroupId": "I{i}", "type": "oncall.message"}, "apns": {"headers": {"apns-priority": "10"}, "payload": {"aps": {"alert": {"title": "Bench push {i}"}, "thread-id": "I{i}"}}}, "android": {"priority": "high"}}'
    f=$WORK/$db-push.json
    R[$db:push_rps]=$(json "$f" ok_rps)
    R[$db:push_p50]=$(json "$f" p50_ms)
    R[$db:push_p99]=$(json "$f" p99_ms)
    R[$db:push_err]=$(json "$f" errors)
    local pushed pushes
    pushed=$(json "$f" total_ok)
    pushes=$(sql "$db" "$target" "SELECT count(*) FROM notifications WHERE kind = 'push'")
    R[$db:push_durable]="$pushes / $pushed"
    [[ $pushes == "$pushed" ]] || log "WARNING: push rows ($pushes) != 2xx answers ($pushed)"

    if [[ $SOAK != 0 && " $SOAK_DBS " == *" $db "* ]]; then
        soak "$db" "$target"
    fi
    if ((HISTORY > 0)); then
        add_history "$db" "$target"
    fi

    stop_server
    log "the server exited $LAST_STOP_MS ms after SIGTERM"
    [[ $db == postgres ]] && drop_pg_db
    return 0
}

# Rows still to deliver (the index on unfinished rows answers it whatever the history).
PENDING_SQL="SELECT count(*) FROM notifications WHERE status IN ('queued', 'delivering', 'awaiting_answer')"

wait_drained() { # wait_drained DB TARGET: seconds until nothing is left to deliver
    local t0=$SECONDS pending
    while :; do
        pending=$(sql "$1" "$2" "$PENDING_SQL")
        [[ $pending == 0 ]] && break
        ((SECONDS - t0 < 300)) || die "$pending notifications still pending after 300 s"
        sleep 0.5
    done
    echo $((SECONDS - t0))
}

# The delivery-vs-acceptance soak: make_call for SOAK at CONCURRENCY clients; the backlog is
# sampled every second meanwhile.
soak() { # soak DB TARGET
    local db=$1 target=$2 samples=$WORK/$1-backlog.txt sampler t0 t1 from
    : >"$samples"
    (while :; do
        sql "$db" "$target" "$PENDING_SQL" >>"$samples" 2>/dev/null || true
        sleep 1
    done) &
    sampler=$!
    t0=$(now_ms)
    local DURATION=$SOAK
    loadgen "$db-soak" --url "$BASE/api/v1/make_call" --method POST --users "$USERS" \
        --body-template 'email=u{n}%40bench.example&message=Soak+call+{i}'
    t1=$(now_ms)
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    from=$((t0 + $(to_ms "$WARMUP")))
    local f=$WORK/$db-soak.json delivered accepted
    R[$db:soak_rps]=$(json "$f" ok_rps)
    R[$db:soak_p99]=$(json "$f" p99_ms)
    R[$db:soak_err]=$(json "$f" errors)
    delivered=$(sql "$db" "$target" "SELECT count(*) FROM notifications WHERE status = 'delivered' AND finished_at >= $from AND finished_at < $t1")
    accepted=$(sql "$db" "$target" "SELECT count(*) FROM notifications WHERE created_at >= $from AND created_at < $t1")
    R[$db:soak_acc_db]=$(awk -v n="$accepted" -v ms=$((t1 - from)) 'BEGIN { printf "%.0f", n * 1000 / ms }')
    R[$db:soak_del]=$(awk -v n="$delivered" -v ms=$((t1 - from)) 'BEGIN { printf "%.0f", n * 1000 / ms }')
    R[$db:soak_backlog]=$(sort -n "$samples" | tail -1)
    R[$db:soak_backlog_s]=$(awk -v b="${R[$db:soak_backlog]:-0}" -v r="${R[$db:soak_acc_db]}" 'BEGIN { printf "%.2f", (r > 0 ? b / r : 0) }')
    R[$db:soak_end]=$(tail -1 "$samples")
    R[$db:soak_drain]=$(wait_drained "$db" "$target")
    log "soak on $db: accepted ${R[$db:soak_acc_db]}/s, delivered ${R[$db:soak_del]}/s, largest backlog ${R[$db:soak_backlog]} (${R[$db:soak_backlog_s]} s of work), drained in ${R[$db:soak_drain]} s"
}

# Milliseconds of one run of a command (median of 5).
time_ms() {
    local runs=() a
    for _ in 1 2 3 4 5; do
        a=$EPOCHREALTIME
        "$@" >/dev/null 2>&1 || log "WARNING: failed: $*"
        runs+=("$(awk -v a="$a" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", (b - a) * 1000 }')")
    done
    printf '%s\n' "${runs[@]}" | median
}

claim_ms() { # claim_ms DB TARGET: the claim's row search (read only: the UPDATE is not run)
    local q="SELECT id FROM notifications WHERE due_at <= $(now_ms) ORDER BY due_at LIMIT 32"
    case $1 in
    sqlite)
        python3 -c 'import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], timeout=10); t = time.perf_counter(); c.execute(sys.argv[2]).fetchall(); print("%.2f" % ((time.perf_counter() - t) * 1000))' "$2" "$q"
        ;;
    postgres)
        psql "$2" -qAt -c "EXPLAIN (ANALYZE) $q FOR UPDATE SKIP LOCKED" | awk '/Execution Time/ { print $3 }'
        ;;
    esac
}

history_probe() { # history_probe DB TARGET LABEL: the reads that must not grow with history
    local db=$1 target=$2 label=$3
    R[$db:$label:events]=$(time_ms relay events list --user u7@bench.example)
    R[$db:$label:metrics]=$(time_ms curl -fsS -o /dev/null "$BASE/metrics")
    R[$db:$label:claim]=$(claim_ms "$db" "$target")
    loadgen "$db-call-$label" --url "$BASE/api/v1/make_call" --method POST --users "$USERS" \
        --body-template "email=u{n}%40bench.example&message=History+$label+{i}"
    R[$db:$label:call]=$(json "$WORK/$db-call-$label.json" ok_rps)
    R[$db:$label:p99]=$(json "$WORK/$db-call-$label.json" p99_ms)
    wait_drained "$db" "$target" >/dev/null
}

# HISTORY finished notifications over the last 30 days, one attempt each, for all users.
add_history() { # add_history DB TARGET
    local db=$1 target=$2 now
    history_probe "$db" "$target" before
    now=$(now_ms)
    log "adding $HISTORY finished notifications and their attempts"
    local spread="($now - (($HISTORY - g) * 2592000000 / $HISTORY))"
    local gen
    case $db in
    sqlite) gen="WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < $HISTORY)" ;;
    postgres) gen="WITH s(g) AS (SELECT generate_series(1, $HISTORY))" ;;
    esac
    sql_exec "$db" "$target" "$gen INSERT INTO notifications (kind, user_id, email, name, message, status, attempts, backend, created_at, updated_at, finished_at) SELECT 'call', u.public_id, u.email, u.name, 'old call ' || g, 'delivered', 1, 'stdout', $spread, $spread, $spread FROM s JOIN directory_users u ON u.id = 1 + g % $USERS"
    sql_exec "$db" "$target" "INSERT INTO delivery_attempts (notification_id, attempt, backend, outcome, started_at, duration_ms) SELECT id, 1, 'stdout', 'delivered', created_at, 1 FROM notifications WHERE message LIKE 'old call %'"
    # As after 30 days of autovacuum: statistics current, the bulk insert's WAL written out.
    case $db in
    postgres)
        sql_exec "$db" "$target" "VACUUM ANALYZE notifications"
        sql_exec "$db" "$target" "VACUUM ANALYZE delivery_attempts"
        sql_exec "$db" "$target" "CHECKPOINT"
        ;;
    sqlite) sql_exec "$db" "$target" "PRAGMA wal_checkpoint(TRUNCATE)" ;;
    esac
    history_probe "$db" "$target" after
}

for db in $DBS; do
    bench_db "$db"
done

# ---------------------------------------------------------------------------------------------
# Report

cell() { echo "${R[$1]:-n/a}"; }
row() { # row LABEL TARGET KEY|FUNCTION: one table row, a cell per database
    local label=$1 goal=$2 what=$3
    local line="| $label | $goal |"
    for db in $DBS; do
        if declare -F "$what" >/dev/null; then
            line+=" $("$what" "$db") |"
        else
            line+=" $(cell "$db:$what") |"
        fi
    done
    echo "$line"
}
int() { if [[ $1 =~ ^[0-9.]+$ ]]; then printf '%.0f' "$1"; else echo "$1"; fi; }
pct() { # pct DB KEY: the value of KEY as a share of /healthz in the same run
    awk -v v="$(cell "$1:$2")" -v h="$(cell "$1:healthz_rps")" 'BEGIN { if (v + 0 > 0 && h + 0 > 0) printf "%.1f %%", v * 100 / h; else print "n/a" }'
}
with_pct() { echo "$(int "$(cell "$1:$2")") ($(pct "$1" "$2"))"; }
f_info() { with_pct "$1" info_rps; }
f_start() {
    local big small
    big=$(cell "$1:start_ms")
    small=$(cell "$1:start_small_ms")
    echo "$big (2 people: $small; ×$(awk -v a="$big" -v b="$small" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'))"
}
soaked() { [[ -n ${R[$1:soak_rps]:-} ]]; }
f_soak_acc() {
    soaked "$1" || {
        echo "–"
        return
    }
    echo "$(int "$(cell "$1:soak_rps")") ($(pct "$1" soak_rps)), $(cell "$1:soak_err") errors"
}
f_soak_p99() { if soaked "$1"; then cell "$1:soak_p99"; else echo "–"; fi; }
f_soak_del() {
    soaked "$1" || {
        echo "–"
        return
    }
    local ok=✓
    awk -v d="$(cell "$1:soak_del")" -v a="$(cell "$1:soak_acc_db")" 'BEGIN { exit !(d + 0 >= a + 0) }' || ok=✗
    echo "$(cell "$1:soak_del") vs $(cell "$1:soak_acc_db") accepted $ok"
}
f_soak_backlog() {
    soaked "$1" || {
        echo "–"
        return
    }
    local ok=✓
    awk -v s="$(cell "$1:soak_backlog_s")" 'BEGIN { exit !(s + 0 <= 1) }' || ok=✗
    echo "$(cell "$1:soak_backlog") ($(cell "$1:soak_backlog_s") s of work) $ok; $(cell "$1:soak_end") at the end, drained in $(cell "$1:soak_drain") s"
}
f_hist() { # f_hist DB KEY: before → after (change)
    local b a
    b=$(cell "$1:before:$2")
    a=$(cell "$1:after:$2")
    echo "$b → $a ($(awk -v a="$a" -v b="$b" 'BEGIN { if (b + 0 > 0) printf "%+.0f %%", (a - b) * 100 / b; else print "n/a" }'))"
}
f_hist_call() { f_hist "$1" call; }
f_hist_p99() { f_hist "$1" p99; }
f_hist_events() { f_hist "$1" events; }
f_hist_metrics() { f_hist "$1" metrics; }
f_hist_claim() { f_hist "$1" claim; }
f_healthz() { echo "$(int "$(cell "$1:healthz_rps")") ($(cell "$1:healthz_err") errors)"; }
f_users() { with_pct "$1" users_rps; }
f_users_p99() { echo "$(cell "$1:users_p99") ($(cell "$1:users_err") errors)"; }
f_call() { with_pct "$1" call_rps; }
f_call_lat() { echo "$(cell "$1:call_p50") / $(cell "$1:call_p99") / $(cell "$1:call_max")"; }
f_call_err() {
    local e
    e=$(cell "$1:call_err")
    if [[ $e == 0 ]]; then echo 0; else echo "$e $(cell "$1:call_err_counts")"; fi
}
f_push() { with_pct "$1" push_rps; }
f_push_lat() { echo "$(cell "$1:push_p50") / $(cell "$1:push_p99"), $(cell "$1:push_err") errors"; }
f_durable() {
    local ok=✓
    [[ $(cell "$1:rows") == "$(cell "$1:answered")" ]] || ok="✗ MISMATCH"
    echo "$(cell "$1:rows") / $(cell "$1:answered") $ok ($(cell "$1:delivered") delivered, drained in $(cell "$1:drain_s") s)"
}

commit=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(cd "$ROOT" && git status --porcelain -- src Cargo.toml Cargo.lock migrations 2>/dev/null | head -1)
[[ -n $dirty ]] && commit+=" (with uncommitted changes)"
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
# Values only for queue settings: others (tokens, URLs) may be secrets.
extra_env=$(env | grep '^ONCALL_RELAY_' | grep -v '^ONCALL_RELAY_DB__' |
    awk -F= '/^ONCALL_RELAY_QUEUE__/ { print; next } { print $1 }' | tr '\n' ' ' || true)
names=""
for db in $DBS; do
    case $db in sqlite) names+=" SQLite |" ;; postgres) names+=" PostgreSQL |" ;; esac
done
seps=$(for _ in $DBS; do printf -- ' ---: |'; done)

report=$WORK/report.md
{
    echo "## oncall-relay benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit, $(nproc) cores ($cpu)," \
        "$USERS users, $CONCURRENCY clients, $WARMUP warm-up + $DURATION measured (soak: $SOAK)," \
        "load generator on the same machine, load average before the run $LOADAVG_START." \
        "PostgreSQL URL parameters: ${PG_PARAMS:-none (sslmode=prefer)}.${extra_env:+ Server settings from the environment: $extra_env}"
    echo
    echo "| metric | target |$names"
    echo "| --- | --- |$seps"
    row "GET /healthz req/s (reference)" "–" f_healthz
    row "GET /api/v1/info req/s (share of /healthz)" "≥ 90 %" f_info
    row "GET users page 3 (short, roles 0+1) req/s" "≥ 5,000" f_users
    row "GET users page p99 ms" "–" f_users_p99
    row "POST make_call accepted/s (share of /healthz)" "≥ 30 % (PG)" f_call
    row "POST make_call p50 / p99 / max ms" "p99 ≤ 25 (PG)" f_call_lat
    row "POST make_call errors (by status)" "0" f_call_err
    row "rows in notifications / 2xx answers" "equal" f_durable
    row "POST fcm_relay (push) accepted/s" "–" f_push
    row "POST fcm_relay p50 / p99 ms, errors" "–" f_push_lat
    row "push rows / 2xx answers" "equal" push_durable
    row "delivered/s (first accept → last delivery)" "–" deliver_rps
    row "longest accept → delivered wait, s" "–" deliver_lag
    row "server CPU, cores (healthz / users / make_call)" "–" cpu
    row "idle RSS after start, MiB" "≤ 25, aim 10" rss_idle
    row "idle RSS after load (queue drained), MiB" "≤ 25, aim 10" rss_after
    row "start → first /healthz, ms (median of $STARTS)" "≤ 20 (SQLite), ≤ 50 (PG)" f_start
    if [[ $SOAK != 0 ]]; then
        row "soak $SOAK: make_call accepted/s (share of /healthz)" "≥ 30 %" f_soak_acc
        row "soak: make_call p99 ms" "≤ 25" f_soak_p99
        row "soak: delivered/s vs accepted/s (same window)" "delivered ≥ accepted" f_soak_del
        row "soak: largest backlog (rows due)" "≤ 1 s of work" f_soak_backlog
    fi
    if ((HISTORY > 0)); then
        row "make_call accepted/s, empty → $HISTORY finished rows" "within 10 %" f_hist_call
        row "make_call p99 ms, empty → history" "within 10 %" f_hist_p99
        row "claim's row search ms, empty → history" "within 10 %" f_hist_claim
        row "events list --user ms, empty → history" "within 10 %" f_hist_events
        row "/metrics scrape ms, empty → history" "within 10 %" f_hist_metrics
    fi
    echo
    echo "<details><summary>raw loadgen output</summary>"
    echo
    echo '```'
    cat "$WORK/raw.txt"
    echo '```'
    echo
    echo "</details>"
} >"$report"

mkdir -p "$RESULTS_DIR"
stamp=$(date -u '+%Y%m%dT%H%M%SZ')
cp "$report" "$RESULTS_DIR/$stamp.md"
cp "$report" "$RESULTS_DIR/latest.md"
echo
cat "$report"
log "written to bench/results/$stamp.md (and latest.md)"
