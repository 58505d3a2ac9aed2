#!/usr/bin/env bash
# Fails when the browser bundle's dependency tree (custos-frontend on wasm32)
# contains server-side crates: database drivers, tokio, the engine, crypto.
set -euo pipefail
cd "$(dirname "$0")/.."

forbidden='^(sea-orm|sea-orm-migration|sea-query|sea-schema|sqlx|sqlx-core|sqlx-sqlite|sqlx-postgres|libsqlite3-sys|tokio|mio|custos-engine|custos-migrations|aes|cbc|cipher|hmac|sha2|hkdf|ed25519-dalek|curve25519-dalek|argon2|ring|aws-lc-rs|aws-lc-sys|rustls|getrandom)$'

tree=$(cargo tree --locked -p custos-frontend --target wasm32-unknown-unknown -e normal,no-proc-macro --prefix none --format '{p}' \
  | awk '{print $1}' | sort -u)
count=$(printf '%s\n' "$tree" | wc -l)
bad=$(printf '%s\n' "$tree" | grep -E "$forbidden" || true)
if [ -n "$bad" ]; then
  echo "The WASM dependency tree of custos-frontend contains server-side crates:" >&2
  printf '  %s\n' $bad >&2
  echo "Find the path with: cargo tree --locked -p custos-frontend --target wasm32-unknown-unknown -i <crate>" >&2
  exit 1
fi
echo "WASM dependency guard: $count crates in custos-frontend's wasm32 tree, none server-side"
