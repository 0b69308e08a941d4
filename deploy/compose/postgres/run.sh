#!/bin/sh
# Start PostgreSQL on PGDATA; on the first start (an empty PGDATA) make the cluster with
# POSTGRES_USER (a superuser) and POSTGRES_PASSWORD, and the database POSTGRES_DB.
# Local connections are trusted, network ones need the password (scram-sha-256).
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "triage-postgres-run: POSTGRES_PASSWORD is not set (the password of $user)" >&2
    exit 2
  fi
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --no-locale >/dev/null
  rm -f "$pwfile"
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    # Single-user mode: nothing listens until the database exists.
    printf 'CREATE DATABASE "%s" OWNER "%s";\n' "$db" "$user" |
      postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
  echo "triage-postgres-run: made the cluster in $PGDATA (user $user, database $db)" >&2
fi
exec postgres -D "$PGDATA" "$@"
