#!/usr/bin/env bash
# Start a local PostgreSQL (Debian cluster) and create the test role + database.
# Idempotent; installs Debian's postgresql when missing. Needs root (as on our machines and CI).
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "postgres: installing Debian's postgresql" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
read -r ver name _ < <(pg_lsclusters --no-header | head -n 1) || true
if [ -z "${ver:-}" ]; then
  ver=$(ls /usr/lib/postgresql | sort -n | tail -n 1); name=main
  pg_createcluster "$ver" "$name" >/dev/null
fi
pg_ctlcluster "$ver" "$name" start 2>/dev/null || true
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
pg_isready -h 127.0.0.1
psql_() { su postgres -c "psql -v ON_ERROR_STOP=1 -qAt -c \"$1\""; }
[ "$(psql_ "SELECT 1 FROM pg_roles WHERE rolname='pawpaw'")" = 1 ] ||
  psql_ "CREATE ROLE pawpaw LOGIN PASSWORD 'pawpaw' CREATEDB"
for db in pawpaw_test pawpaw_monitoring; do
  [ "$(psql_ "SELECT 1 FROM pg_database WHERE datname='$db'")" = 1 ] ||
    psql_ "CREATE DATABASE $db OWNER pawpaw"
done
echo "postgres: ready (postgresql://pawpaw:pawpaw@127.0.0.1:5432/pawpaw_test)"
