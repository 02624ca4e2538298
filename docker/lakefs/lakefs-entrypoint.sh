#!/bin/sh
# lakeFS with a PostgreSQL KV: LAKEFS_INSTALLATION_* does not create the admin there, so
# `lakefs setup` does, once; on later starts it exits 1 with "Setup is already complete."
# Any other failure stops the container (the blanket `|| true` of the samples would hide a
# broken database until the first API call). Then `exec` so lakeFS gets the signals.
set -eu

: "${SETUP_USER_NAME:?SETUP_USER_NAME is not set}"
: "${SETUP_ACCESS_KEY_ID:?SETUP_ACCESS_KEY_ID is not set (LAKEFS_ACCESS_KEY_ID in .env)}"
: "${SETUP_SECRET_ACCESS_KEY:?SETUP_SECRET_ACCESS_KEY is not set (LAKEFS_SECRET_ACCESS_KEY in .env)}"

log="$(mktemp)"
# On success setup prints the credentials: keep them out of the container log.
if lakefs setup --user-name "$SETUP_USER_NAME" \
        --access-key-id "$SETUP_ACCESS_KEY_ID" \
        --secret-access-key "$SETUP_SECRET_ACCESS_KEY" >"$log" 2>&1; then
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

exec lakefs run
