#!/usr/bin/env bash
# airflow-init (one-shot): migrate the metadata database, then write the simple auth manager's
# password file so the admin logs in with the generated password (secrets-init wrote it to
# the pawpaw-secrets volume; `docker compose run --rm secrets-init show` prints it).
# Idempotent: `airflow db migrate` is a no-op on a current schema; the file is rewritten.
# tests/integration/test_compose_scripts.py runs this file against a real PostgreSQL.
set -euo pipefail

: "${_PAWPAW_ADMIN_USER:?_PAWPAW_ADMIN_USER is not set (AIRFLOW_ADMIN_USER in .env)}"
: "${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?the passwords file path is not set}"
if [ -n "${_PAWPAW_ADMIN_PASSWORD_FILE:-}" ]; then
    IFS= read -r _PAWPAW_ADMIN_PASSWORD <"$_PAWPAW_ADMIN_PASSWORD_FILE" || true
fi
: "${_PAWPAW_ADMIN_PASSWORD:?no admin password (_PAWPAW_ADMIN_PASSWORD_FILE or _PAWPAW_ADMIN_PASSWORD)}"
export _PAWPAW_ADMIN_PASSWORD

echo "airflow-init: $(airflow version) with ${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}"
airflow db migrate

# Write to a temporary file and rename: the api-server never reads a half-written file.
python - <<'PY'
import json
import os
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
path.parent.mkdir(parents=True, exist_ok=True)
tmp = path.with_suffix(".tmp")
tmp.write_text(json.dumps({os.environ["_PAWPAW_ADMIN_USER"]: os.environ["_PAWPAW_ADMIN_PASSWORD"]}))
tmp.chmod(0o600)
tmp.replace(path)
print(f"airflow-init: password of {os.environ['_PAWPAW_ADMIN_USER']!r} written to {path}")
PY
echo "airflow-init: done"
