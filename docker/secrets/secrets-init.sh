#!/bin/sh
# secrets-init (one-shot, first service of the stack): every password, key and token of the
# compose stack, generated on the first start into the `pawpaw-secrets` volume and kept.
# Nothing secret is in the repository or in .env; services read these files (*_FILE
# variables, Airflow's *_CMD options, or their entrypoint scripts under docker/).
#
#   secrets-init.sh          create what is missing (idempotent), render the derived files
#   secrets-init.sh show     print the logins a person needs (Airflow, Grafana, MinIO, lakeFS)
#
# Random values come from /dev/urandom: hex for passwords (URL-, JSON- and shell-safe),
# urlsafe base64 of 32 bytes for the Fernet key, 64 random bytes (128 hex characters) for the
# JWT secret (HS512 wants a key of at least 64 bytes). A file that exists is never changed:
# rotate a secret by deleting its file and the state that depends on it (see README).
# User names, database names and hosts are not secret: they come from .env / compose.
# Runs in the postgres image (Debian: sh, od, head, base64, tr); tests run it as it is.
set -eu

dir="${SECRETS_DIR:-/run/pawpaw-secrets}"
umask 022

# --- what is generated ------------------------------------------------------------------
HEX_SECRETS="postgres_password airflow_db_password mlflow_db_password lakefs_db_password
monitoring_db_password grafana_db_password lakefs_secret_access_key lakefs_encrypt_secret_key
lakefs_signing_secret_key airflow_api_secret_key airflow_admin_password grafana_admin_password"
# MinIO keeps secret keys of 8 to 40 characters: 20 random bytes as 40 hex characters.
MINIO_SECRETS="minio_root_password minio_lakefs_secret_key minio_mlflow_secret_key"

hex() {  # hex N: 2N hex characters from N random bytes
    od -An -v -tx1 -N"$1" /dev/urandom | tr -d ' \n'
}

fernet_key() {  # urlsafe base64 of 32 random bytes, as cryptography's Fernet.generate_key()
    head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n'
}

access_key_id() {  # AKIA + 16 upper-case hex characters (the shape of an AWS access key id)
    printf 'AKIA%s' "$(hex 8 | tr 'a-f' 'A-F')"
}

# put NAME VALUE: write atomically, world-readable (the volume is mounted read-only into this
# stack's containers only; they run as different users: postgres, airflow, mlflow, grafana...).
put() {
    printf '%s' "$2" >"$dir/.$1.tmp"
    chmod 0444 "$dir/.$1.tmp"
    mv -f "$dir/.$1.tmp" "$dir/$1"
}

# keep NAME GENERATOR [ARGS]: create NAME once.
keep() {
    name="$1"
    shift
    if [ -s "$dir/$name" ]; then
        return 0
    fi
    put "$name" "$("$@")"
    echo "secrets-init: generated $name"
}

get() {
    IFS= read -r value <"$dir/$1" || [ -n "$value" ]
    printf '%s' "$value"
}

show() {
    for name in airflow_admin_password grafana_admin_password minio_root_password \
        lakefs_access_key_id lakefs_secret_access_key; do
        [ -s "$dir/$name" ] || { echo "secrets-init: $name is missing: start the stack first" >&2; exit 1; }
    done
    echo "Airflow  http://localhost:${AIRFLOW_HOST_PORT:-8080}  user ${AIRFLOW_ADMIN_USER:-admin}  password $(get airflow_admin_password)"
    echo "Grafana  http://localhost:${GRAFANA_HOST_PORT:-3001}  user ${GRAFANA_ADMIN_USER:-admin}  password $(get grafana_admin_password)"
    echo "MinIO    http://localhost:${MINIO_CONSOLE_HOST_PORT:-9001}  user ${MINIO_ROOT_USER:-pawpaw-minio}  password $(get minio_root_password)"
    echo "lakeFS   http://localhost:${LAKEFS_HOST_PORT:-8000}  access key id $(get lakefs_access_key_id)  secret access key $(get lakefs_secret_access_key)"
}

if [ "${1:-}" = show ]; then
    show
    exit 0
fi
if [ -n "${1:-}" ]; then
    echo "usage: secrets-init.sh [show]" >&2
    exit 2
fi

mkdir -p "$dir"
chmod 0755 "$dir"
for name in $HEX_SECRETS; do
    keep "$name" hex 32
done
for name in $MINIO_SECRETS; do
    keep "$name" hex 20
done
keep lakefs_access_key_id access_key_id
keep airflow_fernet_key fernet_key
keep airflow_jwt_secret hex 64

# --- derived files (rewritten every start from the secrets above and the names in .env) -------
pg="${POSTGRES_HOSTPORT:-postgres:5432}"
airflow_user="${AIRFLOW_DB_USER:-airflow}"
monitoring_user="${MONITORING_DB_USER:-monitoring}"
# Airflow reads these through AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD (`cat <file>`).
put airflow_sql_alchemy_conn \
    "postgresql+psycopg2://$airflow_user:$(get airflow_db_password)@$pg/${AIRFLOW_DB_NAME:-airflow}"
# Airflow Connections (LocalFilesystemBackend, JSON form): what plugins/pawpaw_airflow's hooks
# read. Values are hex or plain names, so no JSON escaping is needed.
put airflow_connections.json "{
  \"lakefs_default\": {\"conn_type\": \"lakefs\", \"host\": \"${LAKEFS_HOST:-lakefs}\", \"port\": ${LAKEFS_PORT:-8000}, \"schema\": \"http\", \"login\": \"$(get lakefs_access_key_id)\", \"password\": \"$(get lakefs_secret_access_key)\"},
  \"mlflow_default\": {\"conn_type\": \"mlflow\", \"host\": \"${MLFLOW_HOST:-mlflow}\", \"port\": ${MLFLOW_PORT:-5000}, \"schema\": \"http\"},
  \"monitoring_db\": {\"conn_type\": \"postgres\", \"host\": \"${pg%:*}\", \"port\": ${pg##*:}, \"schema\": \"${MONITORING_DB_NAME:-monitoring}\", \"login\": \"$monitoring_user\", \"password\": \"$(get monitoring_db_password)\"}
}
"
echo "secrets-init: secrets ready in $dir"
