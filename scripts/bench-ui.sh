#!/usr/bin/env bash
# `make bench-ui`: the explorer's load in Chromium (scripts/bench-ui.mjs)
# over a seeded data directory, next to a new ledger of 1,000 demo events
# measured in the same run. Each server is the release build (`custos
# serve`, loopback, a free port, no backups, scheduled verification or
# retention runs); a compliance officer made for the run (random password
# through stdin, disabled afterwards) signs in. Each page shows the last
# day of its ledger's demo events: for the seeded one, the day before its
# seed marker (`seeded-N`, written when `custos demo seed` ended).
#
#   scripts/bench-ui.sh <custos binary> <seeded data dir> <entries it holds> [runs]
set -euo pipefail

bin=$1
seeded=$2
entries=$3
runs=${4:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/custos-bench-ui.XXXXXX")
pids=()
user=""

stop() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do stop "$pid"; done
  if [ $status -ne 0 ]; then
    for log in "$work"/server-*.log; do
      [ -f "$log" ] && { echo "---- last lines of $log ----"; tail -n 20 "$log"; }
    done
  fi
  # The run's user, on the seeded directory, once its server has stopped.
  if [ -n "$user" ] && ! CUSTOS_DATA_DIR="$seeded" "$bin" user disable "$user" >/dev/null 2>&1; then
    echo "warning: could not disable the bench user $user on $seeded: disable it with custos user disable $user" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT

marker="$seeded/seeded-$entries"
[ -f "$marker" ] || { echo "no $marker: seed $seeded first (make bench-seed)"; exit 1; }
[ -d "$root/target/site/pkg" ] || { echo "no built site in target/site: run make site"; exit 1; }

iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
seeded_end=$(stat -c %Y "$marker")

user="bench-ui-$(date +%s)"
password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
CUSTOS_DATA_DIR="$work/base" "$bin" keys init >/dev/null
CUSTOS_DATA_DIR="$work/base" "$bin" demo seed --events 1000 --days 1 2>&1 | tail -n 1
base_end=$(date +%s)
for dir in "$seeded" "$work/base"; do
  printf '%s\n' "$password" | CUSTOS_DATA_DIR="$dir" "$bin" user create --username "$user" \
    --role compliance_officer --password-stdin >/dev/null
done

urls=()
for dir in "$seeded" "$work/base"; do
  end=$([ "$dir" = "$seeded" ] && echo "$seeded_end" || echo "$base_end")
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  CUSTOS_DATA_DIR="$dir" CUSTOS_SERVER__BIND="127.0.0.1:$port" CUSTOS_SERVER__SITE_ROOT="$root/target/site" \
    CUSTOS_BACKUP__INTERVAL_HOURS=0 CUSTOS_LEDGER__VERIFY_INTERVAL_SECS=0 CUSTOS_RETENTION__RUN_AT=off \
    CUSTOS_LOG__FILTER=warn "$bin" serve >"$work/server-$port.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for i in $(seq 1 240); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
    kill -0 "$pid" 2>/dev/null || { echo "the server on $dir exited during start-up"; exit 1; }
    [ "$i" = 240 ] && { echo "the server on $dir did not become ready in 120 s"; exit 1; }
    sleep 0.5
  done
  urls+=("http://127.0.0.1:$port/events?from=$(iso $((end - 86400)))&to=$(iso "$end")")
done

cd "$root"
BENCH_UI_USER="$user" BENCH_UI_PASSWORD="$password" node scripts/bench-ui.mjs "${urls[0]}" "${urls[1]}" "$entries" "$runs"
