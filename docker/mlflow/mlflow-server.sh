#!/bin/sh
# The MLflow tracking server + registry of the compose stack: PostgreSQL backend, artifacts on
# MinIO served through the server (clients log to mlflow-artifacts:/, so only the server holds
# S3 credentials: MLflow's own bucket-scoped MinIO user). Secrets are read from the files
# secrets-init generated. Extra arguments are passed to `mlflow server`.
# tests/integration/test_compose_scripts.py runs this file with a real PostgreSQL and moto's S3.
set -eu

: "${SECRETS_DIR:?SECRETS_DIR is not set}"
: "${MLFLOW_DB_USER:?MLFLOW_DB_USER is not set (.env)}"
: "${MINIO_MLFLOW_USER:?MINIO_MLFLOW_USER is not set (.env)}"

. "$(dirname "$0")/read-secret.sh"  # secret NAME

MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://$MLFLOW_DB_USER:$(secret mlflow_db_password)@${MLFLOW_DB_HOSTPORT:-postgres:5432}/${MLFLOW_DB_NAME:-mlflow}"
AWS_ACCESS_KEY_ID="$MINIO_MLFLOW_USER"
AWS_SECRET_ACCESS_KEY="$(secret minio_mlflow_secret_key)"
export MLFLOW_BACKEND_STORE_URI AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

exec mlflow server \
    --host "${MLFLOW_HOST:-0.0.0.0}" \
    --port "${MLFLOW_PORT:-5000}" \
    --serve-artifacts \
    --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-s3://mlflow/}" \
    "$@"
