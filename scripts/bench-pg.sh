#!/usr/bin/env bash
# `make bench-pg`: the PostgreSQL rows of `make bench`: sealed ingest and
# full verification next to plain inserts and reads (`custos bench ingest`
# on two fresh databases), then first-page searches on a ledger of
# PG_SEARCH_EVENTS demo events (`custos bench search`), seeded once and
# kept.
#
# The server: BENCH_PG_URL (an admin URL, postgres://…/postgres, without
# query parameters; put a password in PGPASSWORD, not in the URL, where
# `ps` would show it) if set; otherwise a cluster of its own under
# <dir>/cluster (scripts/pg-throwaway.sh: 127.0.0.1 only, fsync off),
# started for the run and stopped after it, its data kept for the next
# run. On that server it drops and creates custos_bench_ingest and
# custos_bench_baseline, and creates custos_bench_search once.
#
#   scripts/bench-pg.sh <custos binary> <dir> <ingest events> <search events>
set -euo pipefail

bin=$1
dir=$2
ingest_events=$3
search_events=$4
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir"
own=""
if [ -n "${BENCH_PG_URL:-}" ]; then
  url=$BENCH_PG_URL
elif [ -f "$dir/cluster/port" ]; then
  "$root/scripts/pg-throwaway.sh" up "$dir/cluster"
  url="postgres://postgres@127.0.0.1:$(cat "$dir/cluster/port")/postgres"
  own=1
else
  url=$("$root/scripts/pg-throwaway.sh" start "$dir/cluster")
  own=1
fi
[ -n "$own" ] && trap '"$root/scripts/pg-throwaway.sh" down "$dir/cluster"' EXIT
server=${url%/*}

echo "==> PostgreSQL ingest and verification, $ingest_events events"
psql "$url" -v ON_ERROR_STOP=1 -qc "DROP DATABASE IF EXISTS custos_bench_ingest" -c "DROP DATABASE IF EXISTS custos_bench_baseline" \
  -c "CREATE DATABASE custos_bench_ingest" -c "CREATE DATABASE custos_bench_baseline"
"$bin" bench ingest --events "$ingest_events" \
  --database "$server/custos_bench_ingest" --baseline-database "$server/custos_bench_baseline"
psql "$url" -v ON_ERROR_STOP=1 -qc "DROP DATABASE custos_bench_ingest" -c "DROP DATABASE custos_bench_baseline"

echo "==> PostgreSQL search on $search_events events"
export CUSTOS_DATA_DIR="$dir/search" CUSTOS_DATABASE__URL="$server/custos_bench_search"
mkdir -p "$CUSTOS_DATA_DIR"
[ -f "$CUSTOS_DATA_DIR/kek.key" ] || "$bin" keys init >/dev/null
held=0
if [ "$(psql "$url" -Atc "SELECT 1 FROM pg_database WHERE datname = 'custos_bench_search'")" = 1 ]; then
  held=$(psql "$server/custos_bench_search" -Atc "SELECT COALESCE(MAX(seq), 0) FROM ledger_entries" 2>/dev/null || echo 0)
else
  psql "$url" -qc "CREATE DATABASE custos_bench_search"
fi
if [ "$held" -lt "$search_events" ]; then
  echo "seeding $search_events demo events (once; about 12 minutes for 10M on the build machine)"
  "$bin" demo seed --events "$search_events"
fi
# A user, disabled, so that the bench's server does not create a first administrator.
if ! psql "$server/custos_bench_search" -Atc "SELECT 1 FROM users LIMIT 1" | grep -q 1; then
  head -c 24 /dev/urandom | base64 | "$bin" user create --username bench-owner --role viewer --password-stdin >/dev/null
  "$bin" user disable bench-owner >/dev/null
fi
"$bin" bench search
