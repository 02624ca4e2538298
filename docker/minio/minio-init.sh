#!/bin/sh
# minio-init (one-shot): create the buckets the stack needs. Idempotent (--ignore-existing).
# lakefs: lakeFS's storage namespaces (s3://lakefs/<repo>); mlflow: MLflow's artifacts.
set -eu

: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set (.env)}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD is not set (.env)}"

# The alias holds the credentials in mc's config inside this throwaway container only.
mc alias set pawpaw "${MINIO_ENDPOINT:-http://minio:9000}" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
for bucket in ${MINIO_BUCKETS:-lakefs mlflow}; do
    mc mb --ignore-existing "pawpaw/$bucket"
    # Private: only lakeFS and MLflow (with credentials) read and write.
    mc anonymous set none "pawpaw/$bucket" >/dev/null
done
echo "minio-init: buckets ready: ${MINIO_BUCKETS:-lakefs mlflow}"
