#!/usr/bin/env bash
# Creates one login role and one database per component, plus a read-only role for Grafana.
# The postgres image runs this on the first start of an empty data volume (as the superuser,
# over the local socket). Idempotent, so it can be rerun by hand:
#   docker compose exec postgres bash /docker-entrypoint-initdb.d/10-pawpaw-databases.sh
# Passwords: <NAME>_PASSWORD_FILE (the files secrets-init generated; compose sets these), else
# <NAME>_PASSWORD. Database names: <NAME>_NAME (default airflow, mlflow, lakefs, monitoring).
# A password changed later needs `ALTER ROLE ... PASSWORD` (or a fresh volume).
# tests/integration/test_compose_scripts.py runs this file against a real PostgreSQL.
#
# No `set -u` at top level: the image may source (not execute) this file inside its own
# entrypoint. Values are passed as psql variables and quoted by format(%I, %L), never spliced.
set -eo pipefail

# _secret NAME: the value of $NAME_FILE's file if that is set, else of $NAME (may be empty).
_secret() {
    local file_var="${1}_FILE" value=""
    if [ -n "${!file_var:-}" ]; then
        IFS= read -r value <"${!file_var}" || [ -n "$value" ]
    else
        value="${!1:-}"
    fi
    printf '%s' "$value"
}

_psql() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "${POSTGRES_USER:?POSTGRES_USER is not set}" "$@"
}

# _pawpaw_database DB USER PASSWORD: the role owns its database (and so its public schema).
_pawpaw_database() {
    local db="$1" user="$2" password="$3"
    if [ -z "$user" ] || [ -z "$password" ]; then
        echo "init-databases: user or password for database '$db' is empty (see .env, secrets-init)" >&2
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

_pawpaw_database "${AIRFLOW_DB_NAME:-airflow}" "${AIRFLOW_DB_USER:-airflow}" "$(_secret AIRFLOW_DB_PASSWORD)"
_pawpaw_database "${MLFLOW_DB_NAME:-mlflow}" "${MLFLOW_DB_USER:-mlflow}" "$(_secret MLFLOW_DB_PASSWORD)"
_pawpaw_database "${LAKEFS_DB_NAME:-lakefs}" "${LAKEFS_DB_USER:-lakefs}" "$(_secret LAKEFS_DB_PASSWORD)"
_pawpaw_database "${MONITORING_DB_NAME:-monitoring}" "${MONITORING_DB_USER:-monitoring}" \
    "$(_secret MONITORING_DB_PASSWORD)"

# Grafana only reads the drift tables, which the monitoring role creates later (drift step):
# default privileges grant SELECT on those future tables too.
grafana_password="$(_secret GRAFANA_DB_PASSWORD)"
if [ -z "$grafana_password" ]; then
    echo "init-databases: the Grafana reader's password is empty (GRAFANA_DB_PASSWORD[_FILE])" >&2
    exit 1
fi
_psql --dbname "${MONITORING_DB_NAME:-monitoring}" -v usr="${GRAFANA_DB_USER:-grafana_reader}" \
    -v pw="$grafana_password" -v owner="${MONITORING_DB_USER:-monitoring}" \
    -v db="${MONITORING_DB_NAME:-monitoring}" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'usr', :'pw')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'usr') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', :'db', :'usr') \gexec
SELECT format('GRANT USAGE ON SCHEMA public TO %I', :'usr') \gexec
SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', :'usr') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT SELECT ON TABLES TO %I',
              :'owner', :'usr') \gexec
SQL
echo "init-databases: read-only role '${GRAFANA_DB_USER:-grafana_reader}' on database '${MONITORING_DB_NAME:-monitoring}'"
