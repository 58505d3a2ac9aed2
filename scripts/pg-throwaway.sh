#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the test run.
#
#   pg-throwaway.sh start DIR   initdb into DIR, start on a free port, print the URL
#   pg-throwaway.sh stop DIR    stop it (by the PID in DIR/data/postmaster.pid) and remove DIR
#   pg-throwaway.sh down DIR    stop it (fast shutdown: connections are cut), keep DIR
#   pg-throwaway.sh up DIR      start it again on the same port
#
# Runs the server as the `postgres` user when invoked as root (initdb refuses
# root). Listens on 127.0.0.1 only, trust authentication, no fsync (tests).
set -euo pipefail

cmd=${1:?usage: pg-throwaway.sh start|stop|down|up DIR}
dir=${2:?usage: pg-throwaway.sh start|stop|down|up DIR}

find_bin() {
  local b
  for b in /usr/lib/postgresql/*/bin; do
    [ -x "$b/initdb" ] && { echo "$b"; return; }
  done
  command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return; }
  echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  exit 1
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

case "$cmd" in
  start)
    bin=$(find_bin)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    # As root the server runs as `postgres`, which must reach DIR: a private
    # parent (such as /root, where a CARGO_TARGET_DIR under ~/.cache lies)
    # would stop initdb with a bare "Permission denied".
    as_owner test -w "$dir" -a -x "$dir" || {
      echo "pg-throwaway: $dir is not reachable by the postgres user (a parent directory is private):" \
        "choose a directory under /tmp or /var/tmp" >&2
      exit 1
    }
    as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    port=$(free_port)
    echo "$port" >"$dir/port"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=300" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
  down)
    as_owner "$(find_bin)/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
    ;;
  up)
    port=$(cat "$dir/port")
    as_owner "$(find_bin)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=300" start >/dev/null \
      || { tail -n 20 "$dir/server.log" >&2; exit 1; }
    ;;
  stop)
    bin=$(find_bin)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1 || {
        pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null || true)
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
      }
    fi
    rm -rf "$dir"
    ;;
  *) echo "usage: pg-throwaway.sh start|stop|down|up DIR" >&2; exit 2 ;;
esac
