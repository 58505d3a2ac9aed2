#!/bin/bash
# SQLite page sizes compared: `custos bench ingest` into files made
# beforehand at each page size (the baseline's too), the sizes interleaved
# in each round. Usage: scripts/bench-page-size.sh [custos binary] [rounds] [events]
# Environment: SIZES (default "4096 8192 16384"); EXTRA, more arguments for
# `custos bench ingest` (small commits: EXTRA="--batch 10 --request-size 1
# --concurrency 16" with events 40000; EXTRA is split into words on purpose).
# The sizes run in the same order in every round.
set -euo pipefail
B=${1:-${CARGO_TARGET_DIR:-target}/release/custos}
ROUNDS=${2:-3}
EVENTS=${3:-200000}
SIZES=${SIZES:-4096 8192 16384}
EXTRA=${EXTRA:-}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
for round in $(seq "$ROUNDS"); do
  for ps in $SIZES; do
    rm -f "$d"/*
    for f in a b; do
      sqlite3 "$d/$f.db" "PRAGMA page_size=$ps; PRAGMA journal_mode=WAL; CREATE TABLE _x(a); DROP TABLE _x;" >/dev/null
    done
    out=$("$B" bench ingest --events "$EVENTS" $EXTRA --database "sqlite://$d/a.db" --baseline-database "sqlite://$d/b.db" 2>/dev/null)
    ing=$(echo "$out" | awk '/^ingest/{print $4}')
    base=$(echo "$out" | awk '/^baseline plain inserts/{print $4}')
    ver=$(echo "$out" | awk '/^full verification/{print $3}')
    rd=$(echo "$out" | awk '/^baseline plain reads/{print $4}')
    echo "round $round page_size $ps ingest $ing baseline $base verify $ver reads $rd file_kib $(du -k "$d/a.db" | cut -f1)"
  done
done
