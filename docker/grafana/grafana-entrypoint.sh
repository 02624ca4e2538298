#!/bin/sh
# Grafana with the passwords secrets-init generated: the admin's, and the read-only database
# role's, which provisioning/datasources/monitoring.yaml reads as ${GRAFANA_DB_PASSWORD}.
# Then the image's own entrypoint (/run.sh).
set -eu

: "${SECRETS_DIR:?SECRETS_DIR is not set}"
. "$(dirname "$0")/read-secret.sh"  # secret NAME
GF_SECURITY_ADMIN_PASSWORD="$(secret grafana_admin_password)"
GRAFANA_DB_PASSWORD="$(secret grafana_db_password)"
export GF_SECURITY_ADMIN_PASSWORD GRAFANA_DB_PASSWORD
exec "${GRAFANA_RUN:-/run.sh}" "$@"
