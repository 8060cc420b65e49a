#!/bin/bash
# Initialise the cluster on first start (superuser POSTGRES_USER with POSTGRES_PASSWORD, database
# POSTGRES_DB, password authentication over TCP), then run the server in the foreground.
set -euo pipefail
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [[ ! -f $PGDATA/.initialised ]]; then # absent after a start-up that failed half-way: start again
  [[ -n ${POSTGRES_PASSWORD:-} ]] || { echo "postgres-run: POSTGRES_PASSWORD is required" >&2; exit 1; }
  find "$PGDATA" -mindepth 1 -delete
  initdb -D "$PGDATA" -U "$user" --encoding=UTF8 --locale=C.UTF-8 --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [[ $db != postgres ]]; then
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
    createdb -U "$user" "$db"
    pg_ctl -D "$PGDATA" -w stop >/dev/null
  fi
  touch "$PGDATA/.initialised"
  echo "postgres-run: initialised $PGDATA (user $user, database $db)"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
