#!/bin/sh
# MinIO with the root password that secrets-init generated (read from the secrets volume, so
# it never sits in the compose file, .env or `docker inspect`). Then `exec` the server so it
# gets the signals. The health check (`mc ready local`) needs no credentials.
set -eu

: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set (.env)}"
: "${MINIO_ROOT_PASSWORD_FILE:?MINIO_ROOT_PASSWORD_FILE is not set}"
IFS= read -r MINIO_ROOT_PASSWORD <"$MINIO_ROOT_PASSWORD_FILE" || [ -n "${MINIO_ROOT_PASSWORD:-}" ]
export MINIO_ROOT_PASSWORD
unset MINIO_ROOT_PASSWORD_FILE  # MinIO would read it itself, with its own path rules
exec "${MINIO_BINARY:-minio}" "$@"
