#!/usr/bin/env bash
# The PostgreSQL restore drill (README: Backups and disaster recovery).
#
#   pg-backup-drill.sh CUSTOS_BINARY
#
# A throw-away cluster gets a Custos ledger (demo events), a checkpoint is
# kept, pg_basebackup takes a base backup with its WAL while events keep
# coming, more events follow, the cluster is destroyed, PostgreSQL starts on
# the base backup, and `custos verify --with-kek` checks the restored ledger:
# intact against the checkpoint kept before the backup, and 1 (truncated:
# the backup is behind) against one kept after the later events. Exits
# non-zero, saying why, when any step does not hold.
set -euo pipefail

custos=${1:?usage: pg-backup-drill.sh CUSTOS_BINARY}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
chmod 755 "$work"
primary="$work/primary"
restored="$work/restored"
cleanup() {
  "$root/scripts/pg-throwaway.sh" stop "$primary" >/dev/null 2>&1 || true
  if [ -f "$restored/data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$restored/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
for b in /usr/lib/postgresql/*/bin; do [ -x "$b/pg_basebackup" ] && bin=$b; done
bin=${bin:?PostgreSQL server binaries not found (apt-get install postgresql)}
trap cleanup EXIT
fail() { echo "pg-backup-drill: $*" >&2; exit 1; }

url=$("$root/scripts/pg-throwaway.sh" start "$primary")
port=${url##*:}; port=${port%%/*}
db_url="${url%/postgres}/postgres"
export CUSTOS_KEK="SGVyZSBpcyBhIDMyLWJ5dGUgdGVzdCBrZXkgISEhISE="
export CUSTOS_DATABASE__URL="$db_url" CUSTOS_LOG__FILTER=warn CUSTOS_DATA_DIR="$work/data"
"$custos" demo seed --events 400 --days 2 >/dev/null 2>&1 || fail "seeding the ledger failed"
"$custos" checkpoint >"$work/before.note" || fail "no checkpoint"

# The base backup, with its WAL, while events keep coming in.
"$custos" demo seed --events 300 --days 1 --seed 2 >/dev/null 2>&1 &
writer=$!
mkdir -p "$restored" && { [ "$(id -u)" = 0 ] && chown postgres: "$restored" || true; }
as_owner "$bin/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$restored/data" -X stream -c fast \
  || fail "pg_basebackup failed"
wait "$writer" || fail "ingest during the backup failed"
"$custos" demo seed --events 100 --days 1 --seed 3 >/dev/null 2>&1 || fail "seeding after the backup failed"
"$custos" checkpoint >"$work/after.note" || fail "no checkpoint after"
after_size=$(sed -n 2p "$work/after.note")

# The disk is lost: the cluster and its data go.
"$root/scripts/pg-throwaway.sh" stop "$primary"

# PostgreSQL on the base backup (it replays the WAL it holds), then Custos checks it.
port2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
as_owner "$bin/pg_ctl" -D "$restored/data" -l "$restored/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port2 -k $restored" start >/dev/null || { cat "$restored/server.log" >&2; fail "the restored cluster did not start"; }
restored_url="postgres://postgres@127.0.0.1:$port2/postgres"
out=$("$custos" verify --database "$restored_url" --with-kek --trusted-checkpoint "$work/before.note") \
  || { echo "$out" >&2; fail "the restored ledger does not verify against the checkpoint kept before the backup"; }
echo "$out" | grep -q "ledger is INTACT" || fail "no INTACT verdict: $out"
entries=$(echo "$out" | sed -n 's/.*: \([0-9]*\) entries, .*/\1/p' | head -1)
set +e
behind=$("$custos" verify --database "$restored_url" --with-kek --trusted-checkpoint "$work/after.note")
code=$?
set -e
[ "$code" = 1 ] || fail "a checkpoint kept after the backup must show it behind (exit 1), got $code: $behind"
echo "$behind" | grep -q "it was truncated" || fail "not reported as behind: $behind"
echo "pg-backup-drill: restored from pg_basebackup, ${entries} entries intact with their MACs; a checkpoint kept later (${after_size} entries) shows the backup $((after_size - entries)) entries behind"
