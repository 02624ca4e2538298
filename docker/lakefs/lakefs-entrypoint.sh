#!/bin/sh
# lakeFS with a PostgreSQL KV and MinIO blockstore, every secret read from the files that
# secrets-init generated (nothing at lakeFS's public defaults: the auth encryption key and the
# blockstore signing key are set; MinIO is reached with lakeFS's own bucket-scoped user).
# With a PostgreSQL KV, LAKEFS_INSTALLATION_* does not create the admin, so `lakefs setup`
# does, once; on later starts it exits 1 with "Setup is already complete." Any other failure
# stops the container (the blanket `|| true` of the samples would hide a broken database until
# the first API call). Then `exec` so lakeFS gets the signals.
set -eu

: "${SECRETS_DIR:?SECRETS_DIR is not set}"
: "${LAKEFS_DB_USER:?LAKEFS_DB_USER is not set (.env)}"
: "${MINIO_LAKEFS_USER:?MINIO_LAKEFS_USER is not set (.env)}"
: "${SETUP_USER_NAME:?SETUP_USER_NAME is not set (LAKEFS_ADMIN_USER in .env)}"

. "$(dirname "$0")/read-secret.sh"  # secret NAME

LAKEFS_DATABASE_POSTGRES_CONNECTION_STRING="postgres://$LAKEFS_DB_USER:$(secret lakefs_db_password)@${LAKEFS_DB_HOSTPORT:-postgres:5432}/${LAKEFS_DB_NAME:-lakefs}?sslmode=disable"
LAKEFS_AUTH_ENCRYPT_SECRET_KEY="$(secret lakefs_encrypt_secret_key)"
LAKEFS_BLOCKSTORE_SIGNING_SECRET_KEY="$(secret lakefs_signing_secret_key)"
LAKEFS_BLOCKSTORE_S3_CREDENTIALS_ACCESS_KEY_ID="$MINIO_LAKEFS_USER"
LAKEFS_BLOCKSTORE_S3_CREDENTIALS_SECRET_ACCESS_KEY="$(secret minio_lakefs_secret_key)"
export LAKEFS_DATABASE_POSTGRES_CONNECTION_STRING LAKEFS_AUTH_ENCRYPT_SECRET_KEY \
    LAKEFS_BLOCKSTORE_SIGNING_SECRET_KEY LAKEFS_BLOCKSTORE_S3_CREDENTIALS_ACCESS_KEY_ID \
    LAKEFS_BLOCKSTORE_S3_CREDENTIALS_SECRET_ACCESS_KEY
access_key_id="$(secret lakefs_access_key_id)"
secret_access_key="$(secret lakefs_secret_access_key)"
lakefs="${LAKEFS_BINARY:-lakefs}"

log="$(mktemp)"
# On success setup prints the credentials: keep them out of the container log.
if "$lakefs" setup --user-name "$SETUP_USER_NAME" \
        --access-key-id "$access_key_id" \
        --secret-access-key "$secret_access_key" >"$log" 2>&1; then
    echo "lakefs-entrypoint: admin '$SETUP_USER_NAME' created"
elif grep -q "already complete" "$log"; then
    echo "lakefs-entrypoint: already set up"
else
    echo "lakefs-entrypoint: lakefs setup failed:" >&2
    cat "$log" >&2
    rm -f "$log"
    exit 1
fi
rm -f "$log"

exec "$lakefs" run
