#!/usr/bin/env bash
# Creates one login role and one database per component, plus a read-only role for Grafana.
# The postgres image runs this on the first start of an empty data volume (as the superuser,
# over the local socket). Idempotent, so it can be rerun by hand:
#   docker compose exec postgres bash /docker-entrypoint-initdb.d/10-pawpaw-databases.sh
# Changing a password in .env later needs `ALTER ROLE ... PASSWORD` (or a fresh volume).
#
# No `set -u` at top level: the image may source (not execute) this file inside its own
# entrypoint. Values are passed as psql variables and quoted by format(%I, %L), never spliced.
set -eo pipefail

_psql() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "${POSTGRES_USER:?POSTGRES_USER is not set}" "$@"
}

# _pawpaw_database DB USER PASSWORD: the role owns its database (and so its public schema).
_pawpaw_database() {
    local db="$1" user="$2" password="$3"
    if [ -z "$user" ] || [ -z "$password" ]; then
        echo "init-databases: user or password for database '$db' is empty (see .env)" >&2
        return 1
    fi
    _psql --dbname postgres -v db="$db" -v usr="$user" -v pw="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'usr', :'pw')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'usr') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'usr')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
    echo "init-databases: database '$db' owned by '$user'"
}

_pawpaw_database airflow "${AIRFLOW_DB_USER:-airflow}" "${AIRFLOW_DB_PASSWORD:-}"
_pawpaw_database mlflow "${MLFLOW_DB_USER:-mlflow}" "${MLFLOW_DB_PASSWORD:-}"
_pawpaw_database lakefs "${LAKEFS_DB_USER:-lakefs}" "${LAKEFS_DB_PASSWORD:-}"
_pawpaw_database monitoring "${MONITORING_DB_USER:-monitoring}" "${MONITORING_DB_PASSWORD:-}"

# Grafana only reads the drift tables, which the monitoring role creates later (drift step):
# default privileges grant SELECT on those future tables too.
if [ -z "${GRAFANA_DB_PASSWORD:-}" ]; then
    echo "init-databases: GRAFANA_DB_PASSWORD is empty (see .env)" >&2
    exit 1
fi
_psql --dbname monitoring -v usr="${GRAFANA_DB_USER:-grafana_reader}" -v pw="$GRAFANA_DB_PASSWORD" \
    -v owner="${MONITORING_DB_USER:-monitoring}" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'usr', :'pw')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'usr') \gexec
SELECT format('GRANT CONNECT ON DATABASE monitoring TO %I', :'usr') \gexec
SELECT format('GRANT USAGE ON SCHEMA public TO %I', :'usr') \gexec
SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', :'usr') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT SELECT ON TABLES TO %I',
              :'owner', :'usr') \gexec
SQL
echo "init-databases: read-only role '${GRAFANA_DB_USER:-grafana_reader}' on database 'monitoring'"
