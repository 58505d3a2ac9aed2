#!/usr/bin/env bash
# The whole test run (what `make test` and CI run):
#   1. formatting, clippy (warnings are errors) and the WASM dependency guard;
#   2. a throw-away PostgreSQL cluster;
#   3. every Rust test, against SQLite files and that PostgreSQL;
#   4. the release build; the PostgreSQL restore drill; three replicas on one
#      PostgreSQL with a kill -9 under load (scripts/replicas.sh); the fault
#      suite (scripts/faults.py); an S3 API server (moto); the
#      release server on a free port with a fresh data directory holding demo events
#      (archives and backups to that S3), and a second one on a ledger tampered with;
#   5. the Playwright suite in Debian's Chromium.
# Everything started here is stopped by PID on exit, also when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
# No incremental caches: every CI run is a fresh clone, so they only pile up
# in a persistent target directory (tens of GB) and never speed a run up.
export CARGO_INCREMENTAL=0
work=$(mktemp -d "${TMPDIR:-/tmp}/custos-test.XXXXXX")
chmod 755 "$work"
server_pid=""
tampered_pid=""
moto_pid=""
started_at=$(date +%s)

step() { printf '\n==> %s (%ss)\n' "$1" "$(( $(date +%s) - started_at ))"; }

stop_pid() {
  local pid=$1
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

cleanup() {
  local status=$?
  stop_pid "$server_pid"
  stop_pid "$tampered_pid"
  stop_pid "$moto_pid"
  scripts/pg-throwaway.sh stop "$work/pg" || true
  if [ $status -ne 0 ] && [ -f "$work/server.log" ]; then
    echo "---- last lines of the server log ----"; tail -n 40 "$work/server.log"
  fi
  rm -rf "$work"
  printf '\n==> %s after %ss\n' "$([ $status -eq 0 ] && echo PASSED || echo FAILED)" "$(( $(date +%s) - started_at ))"
}
trap cleanup EXIT

step "formatting, lints and the WASM dependency guard"
cargo fmt --all -- --check
cargo clippy --locked --all-targets --quiet -- -D warnings
# The browser-only code (hydrate) is linted for its own target.
cargo clippy --locked -p custos-frontend --target wasm32-unknown-unknown --quiet -- -D warnings
scripts/check-wasm-deps.sh

step "throw-away PostgreSQL"
pg_url=$(scripts/pg-throwaway.sh start "$work/pg")
echo "PostgreSQL at ${pg_url%%/postgres}"

step "Rust tests (SQLite and PostgreSQL)"
CUSTOS_TEST_POSTGRES_URL=$pg_url CUSTOS_REQUIRE_POSTGRES=1 cargo test --locked

step "release build (server and WASM site)"
cargo leptos build --release

step "PostgreSQL restore drill (pg_basebackup, then custos verify)"
scripts/pg-backup-drill.sh "$target_dir/release/custos"

step "three replicas on one PostgreSQL, kill -9 of a lease holder under load"
scripts/replicas.sh "$target_dir/release/custos" 1

step "the fault suite: kill -9, PostgreSQL restart and freeze, disk full, clock jumps, tail across replicas, schemathesis"
# Bounded as a whole: a scenario that hangs fails the run instead.
timeout --signal=TERM --kill-after=60 2400 python3 scripts/faults.py "$target_dir/release/custos"

step "S3 API server (moto) with an Object Lock bucket, for archives and backups"
s3port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"$HOME/.cache/custos/pyvenv/bin/moto_server" -H 127.0.0.1 -p "$s3port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for i in $(seq 1 120); do
  if curl -s -o /dev/null "http://127.0.0.1:$s3port/"; then break; fi
  [ "$i" = 120 ] && { echo "moto did not start in 60 s"; tail -n 20 "$work/moto.log"; exit 1; }
  sleep 0.5
done
curl -fsS -X PUT -H 'x-amz-bucket-object-lock-enabled: true' "http://127.0.0.1:$s3port/custos-e2e" >/dev/null
echo "S3 API at http://127.0.0.1:$s3port, bucket custos-e2e"

step "release server on a free port"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
export CUSTOS_DATA_DIR="$work/data"
"$target_dir/release/custos" keys init >/dev/null
# Events recorded 200 days ago, for the retention suite (first: commit
# times never go backwards), then demo events for the dashboards (through
# the ingest path).
"$target_dir/release/custos" demo seed --events 300 --days 5 --seed 7 --recorded-days-ago 200 2>&1 | tail -n 1
"$target_dir/release/custos" demo seed --events 5000 --days 7 2>&1 | tail -n 1
# The first administrator, known to the Playwright suite.
export E2E_ADMIN_PASSWORD="e2e admin password $(date +%s)"
# The notification tests deliver to receivers on this host. Archives and
# backups go to the S3 API server under Object Lock; cold copies daily.
CUSTOS_OBJECT_STORE__URL=s3://custos-e2e/custos CUSTOS_OBJECT_STORE__ENDPOINT="http://127.0.0.1:$s3port" \
CUSTOS_OBJECT_STORE__ALLOW_HTTP=true CUSTOS_OBJECT_STORE__ACCESS_KEY_ID=custos-e2e \
CUSTOS_OBJECT_STORE__SECRET_ACCESS_KEY=custos-e2e-secret CUSTOS_OBJECT_STORE__OBJECT_LOCK=governance \
CUSTOS_OBJECT_STORE__OBJECT_LOCK_DAYS=1 CUSTOS_RETENTION__COLD_COPIES=daily \
CUSTOS_NOTIFICATIONS__ALLOW_PRIVATE_DESTINATIONS=true CUSTOS_BACKUP__INTERVAL_HOURS=0 \
CUSTOS_ADMIN_USERNAME=admin CUSTOS_ADMIN_PASSWORD="$E2E_ADMIN_PASSWORD" \
CUSTOS_SERVER__BIND="127.0.0.1:$port" CUSTOS_SERVER__SITE_ROOT="$root/target/site" CUSTOS_LEDGER__CHECKPOINT_INTERVAL_SECS=1 \
  "$target_dir/release/custos" serve >"$work/server.log" 2>&1 &
server_pid=$!
for i in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$server_pid" 2>/dev/null || { echo "the server exited during start-up"; exit 1; }
  [ "$i" = 120 ] && { echo "the server did not become ready in 60 s"; exit 1; }
  sleep 0.5
done
echo "ready on http://127.0.0.1:$port (pid $server_pid)"

step "a second server on a tampered ledger"
# Demo events, then one byte of one sealed payload changed behind Custos's
# back (its append-only trigger dropped first, as someone with raw access
# to the database file could): verification must name that seq.
tampered_seq=150
tport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
CUSTOS_DATA_DIR="$work/tampered" "$target_dir/release/custos" keys init >/dev/null
CUSTOS_DATA_DIR="$work/tampered" "$target_dir/release/custos" demo seed --events 300 --days 1 2>&1 | tail -n 1
python3 - "$work/tampered/custos.db" "$tampered_seq" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
seq = int(sys.argv[2])
db.execute("DROP TRIGGER ledger_entries_no_update")
(ct,) = db.execute("SELECT ciphertext FROM ledger_entries WHERE seq = ?", (seq,)).fetchone()
ct = bytearray(ct)
ct[len(ct) // 2] ^= 0x01
db.execute("UPDATE ledger_entries SET ciphertext = ? WHERE seq = ?", (bytes(ct), seq))
db.commit()
PY
CUSTOS_DATA_DIR="$work/tampered" CUSTOS_ADMIN_USERNAME=admin CUSTOS_ADMIN_PASSWORD="$E2E_ADMIN_PASSWORD" \
CUSTOS_SERVER__BIND="127.0.0.1:$tport" CUSTOS_SERVER__SITE_ROOT="$root/target/site" \
  "$target_dir/release/custos" serve >"$work/tampered.log" 2>&1 &
tampered_pid=$!
for i in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$tport/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$tampered_pid" 2>/dev/null || { echo "the tampered server exited during start-up"; tail -n 20 "$work/tampered.log"; exit 1; }
  [ "$i" = 120 ] && { echo "the tampered server did not become ready in 60 s"; exit 1; }
  sleep 0.5
done
echo "tampered ledger (seq $tampered_seq) on http://127.0.0.1:$tport"

step "Playwright end-to-end suite (Debian Chromium)"
CUSTOS_BASE_URL="http://127.0.0.1:$port" CUSTOS_SERVER_LOG="$work/server.log" \
E2E_TAMPERED_URL="http://127.0.0.1:$tport" E2E_TAMPERED_SEQ="$tampered_seq" \
  npx playwright test --config end2end/playwright.config.ts
