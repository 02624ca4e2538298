#!/bin/sh
# minio-init (one-shot): the buckets the stack needs, and one MinIO user per client, each
# allowed only its own bucket -- lakeFS and MLflow never hold MinIO's root keys.
# Idempotent: buckets --ignore-existing; users and policies are (re)written; attaching an
# already attached policy is not an error.
#   lakefs: lakeFS's storage namespaces (s3://lakefs/<repo>)   user $MINIO_LAKEFS_USER
#   mlflow: MLflow's artifacts (s3://mlflow/)                   user $MINIO_MLFLOW_USER
# Secrets come from the files secrets-init wrote; policies from docker/minio/policies/.
set -eu

: "${MINIO_ROOT_USER:?MINIO_ROOT_USER is not set (.env)}"
: "${SECRETS_DIR:?SECRETS_DIR is not set}"
: "${MINIO_LAKEFS_USER:?MINIO_LAKEFS_USER is not set (.env)}"
: "${MINIO_MLFLOW_USER:?MINIO_MLFLOW_USER is not set (.env)}"
policies="${MINIO_POLICIES_DIR:-/policies}"

. "$(dirname "$0")/read-secret.sh"  # secret NAME

root_password="$(secret minio_root_password)"

# The alias holds the credentials in mc's config inside this throwaway container only.
mc alias set pawpaw "${MINIO_ENDPOINT:-http://minio:9000}" "$MINIO_ROOT_USER" "$root_password" \
    >/dev/null
for bucket in ${MINIO_BUCKETS:-lakefs mlflow}; do
    mc mb --ignore-existing "pawpaw/$bucket"
    # Private: only the users below (and root) read and write.
    mc anonymous set none "pawpaw/$bucket" >/dev/null
done

# user NAME SECRET_FILE POLICY: a MinIO user limited to the policy's bucket.
user() {
    user_secret="$(secret "$2")"
    mc admin user add pawpaw "$1" "$user_secret" >/dev/null
    mc admin policy create pawpaw "$3" "$policies/$3.json" >/dev/null
    if ! out="$(mc admin policy attach pawpaw "$3" --user "$1" 2>&1)"; then
        case "$out" in
            *already*) ;;  # "The specified policy change is already in effect."
            *) echo "$out" >&2; exit 1 ;;
        esac
    fi
    echo "minio-init: user '$1' with policy '$3'"
}
user "$MINIO_LAKEFS_USER" minio_lakefs_secret_key pawpaw-lakefs
user "$MINIO_MLFLOW_USER" minio_mlflow_secret_key pawpaw-mlflow
echo "minio-init: buckets ready: ${MINIO_BUCKETS:-lakefs mlflow}"
