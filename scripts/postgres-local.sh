#!/usr/bin/env bash
# A private PostgreSQL server on 127.0.0.1 for tests and demos, from the distribution's binaries.
#
#   scripts/postgres-local.sh start|stop|status|url
#
# Environment:
#   PG_PORT        port (default 55432)
#   PG_LOCAL_DIR   data and log folder (default <project>/.local/postgres, git-ignored)
#
# The cluster trusts local connections (user "assethooks", database "assethooks"); it is for tests only.
# As root, the server runs as the "postgres" system user, which the PostgreSQL package creates.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${PG_PORT:-55432}
DIR=${PG_LOCAL_DIR:-$ROOT/.local/postgres}
DATA=$DIR/data-$PORT
LOG=$DIR/postgres-$PORT.log

say() { echo "postgres-local: $*" >&2; }

bindir() {
  if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
    pg_config --bindir
    return
  fi
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n $found ]] || { say "no PostgreSQL server binaries (install the postgresql package)"; exit 1; }
  echo "$found"
}

BIN=$(bindir)

as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

status() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; }

start() {
  if status; then
    say "already running on 127.0.0.1:$PORT"
    return
  fi
  mkdir -p "$DIR"
  if [[ $(id -u) -eq 0 ]]; then chown postgres "$DIR"; fi
  if [[ ! -f $DATA/PG_VERSION ]]; then
    as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
      || { cat "$DIR/initdb.log" >&2; exit 1; }
  fi
  # fsync off: test data needs no crash safety, and the tests are much faster without it.
  as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
    -o "-h 127.0.0.1 -p $PORT -k /tmp -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || { tail -n 30 "$LOG" >&2; exit 1; }
  "$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
SELECT 'CREATE ROLE assethooks LOGIN SUPERUSER' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'assethooks')\gexec
SELECT 'CREATE DATABASE assethooks OWNER assethooks' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'assethooks')\gexec
SQL
  say "running on 127.0.0.1:$PORT ($(url))"
}

stop() {
  if [[ -f $DATA/postmaster.pid ]]; then
    as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    say "stopped"
  else
    say "not running"
  fi
}

url() { echo "postgresql://assethooks@127.0.0.1:$PORT/assethooks"; }

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status && say "answering on 127.0.0.1:$PORT" || { say "not answering on 127.0.0.1:$PORT"; exit 1; } ;;
  url) url ;;
  *)
    echo "usage: $0 start|stop|status|url" >&2
    exit 2
    ;;
esac
