"""The compose stack's own scripts, run here against real services, in the stack's order.

secrets-init generates the secrets; docker/postgres/init-databases.sh (as the PostgreSQL image
runs it: the superuser over the local socket) creates the roles and databases from them in
our real PostgreSQL; docker/airflow/init.sh migrates Airflow's metadata database through the
generated connection (Airflow's *_CMD option, as compose sets it) and writes the admin's
password file; docker/mlflow/mlflow-server.sh starts the real MLflow server on its PostgreSQL
database with artifacts on moto's S3. Database and role names are throwaway (t_<random>_...)
and are dropped afterwards. What this cannot show: the images themselves (no Docker here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.fixtures.common import free_port, stop_process_group, wait_until
from tests.unit.test_compose import (
    DOCKER,
    SECRETS_MOUNT,
    _rendered_environment,
    _run_secrets_init,
    _staged_scripts,
)

pytestmark = pytest.mark.integration

VENV_BIN = Path(sys.executable).parent
COMPONENTS = ("airflow", "mlflow", "lakefs", "monitoring")


def _superuser_psql(sql: str) -> str:
    """psql as the cluster's superuser over the local socket (how the image runs init scripts)."""
    run = subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.fixture(scope="module")
def stack(postgres_url: str) -> Iterator[dict]:
    """Secrets generated, then init-databases.sh run; yields names, secrets and URLs."""
    if os.geteuid() != 0 or not shutil.which("runuser"):
        pytest.fail(
            "init-databases.sh runs as PostgreSQL's superuser over the local socket: this test "
            "needs root (runuser -u postgres), as on our machines and in CI"
        )
    prefix = f"t_{uuid.uuid4().hex[:8]}"
    names = {c: f"{prefix}_{c}" for c in COMPONENTS}
    grafana = f"{prefix}_grafana"
    # The postgres OS user must read the secrets, as the image's postgres user reads the volume.
    secrets = Path(tempfile.mkdtemp(prefix="pawpaw-secrets-", dir="/tmp"))
    secrets.chmod(0o755)
    url = sa.engine.make_url(postgres_url)
    hostport = f"{url.host}:{url.port or 5432}"
    _run_secrets_init(
        secrets,
        POSTGRES_HOSTPORT=hostport,
        AIRFLOW_DB_USER=names["airflow"],
        AIRFLOW_DB_NAME=names["airflow"],
        MONITORING_DB_USER=names["monitoring"],
        MONITORING_DB_NAME=names["monitoring"],
    )
    env = {
        k: v.replace(SECRETS_MOUNT, str(secrets))
        for k, v in _rendered_environment("postgres").items()
    }
    for component in COMPONENTS:
        key = component.upper()
        env[f"{key}_DB_USER"] = names[component]
        env[f"{key}_DB_NAME"] = names[component]
    env["GRAFANA_DB_USER"] = grafana
    run_init = [
        "runuser", "-u", "postgres", "--", "env", f"PATH={os.environ['PATH']}",
        *[f"{k}={v}" for k, v in env.items()],
        "bash", str(DOCKER / "postgres" / "init-databases.sh"),
    ]  # fmt: skip
    info = {"names": names, "grafana": grafana, "secrets": secrets, "hostport": hostport,
            "run_init": run_init}  # fmt: skip
    try:
        start = time.monotonic()
        done = subprocess.run(run_init, capture_output=True, text=True, timeout=120, cwd="/")
        info["init_s"] = time.monotonic() - start
        assert done.returncode == 0, done.stderr
        info["init_output"] = done.stdout
        yield info
    finally:
        for db in names.values():
            _superuser_psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        for role in [*names.values(), grafana]:
            _superuser_psql(f'DROP ROLE IF EXISTS "{role}"')
        shutil.rmtree(secrets, ignore_errors=True)


def _url(stack: dict, component: str, role: str | None = None, secret: str | None = None) -> str:
    role = role or stack["names"][component]
    password = (stack["secrets"] / (secret or f"{component}_db_password")).read_text()
    return (
        f"postgresql+psycopg2://{role}:{password}@{stack['hostport']}/{stack['names'][component]}"
    )


def test_init_databases_creates_each_role_and_database_from_the_generated_passwords(stack):
    for component in COMPONENTS:
        engine = sa.create_engine(_url(stack, component))
        with engine.connect() as conn:
            owner = conn.execute(
                sa.text("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :d"),
                {"d": stack["names"][component]},
            ).scalar_one()
        engine.dispose()
        assert owner == stack["names"][component]
    assert stack["init_output"].count("init-databases: database") == 4
    # Idempotent: the image runs it once, a person may run it again.
    again = subprocess.run(stack["run_init"], capture_output=True, text=True, timeout=120, cwd="/")
    assert again.returncode == 0, again.stderr


def test_grafana_reader_sees_the_drift_tables_and_writes_nothing(stack):
    owner = sa.create_engine(_url(stack, "monitoring"))
    with owner.begin() as conn:  # the drift step creates its tables later, as this role
        conn.execute(sa.text("CREATE TABLE drift_runs (model_version text)"))
        conn.execute(sa.text("INSERT INTO drift_runs VALUES ('1')"))
    owner.dispose()
    reader = sa.create_engine(
        _url(stack, "monitoring", role=stack["grafana"], secret="grafana_db_password")
    )
    with reader.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM drift_runs")).scalar_one() == 1
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("INSERT INTO drift_runs VALUES ('2')"))
    reader.dispose()


def test_airflow_init_migrates_through_the_generated_connection(stack, tmp_path: Path):
    """docker/airflow/init.sh with the compose environment of airflow-init: the metadata DB
    comes from AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD, the admin's password from its file."""
    env = {
        k: v.replace(SECRETS_MOUNT, str(stack["secrets"]))
        for k, v in _rendered_environment("airflow-init").items()
        if k.startswith(("AIRFLOW__", "_PAWPAW_"))
    }
    passwords = tmp_path / "auth" / "simple_auth_manager_passwords.json"
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(passwords)
    start = time.monotonic()
    run = subprocess.run(
        ["bash", str(DOCKER / "airflow" / "init.sh")],
        env={"PATH": f"{VENV_BIN}:{os.environ['PATH']}", "HOME": str(tmp_path),
             "AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__PARALLELISM": "2",
             **env},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "airflow-init: done" in run.stdout
    admin = (stack["secrets"] / "airflow_admin_password").read_text()
    assert json.loads(passwords.read_text()) == {"admin": admin}
    assert oct(passwords.stat().st_mode & 0o777) == "0o600"
    engine = sa.create_engine(_url(stack, "airflow"))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert {"dag", "dag_run", "task_instance", "connection"} <= tables
    print(f"airflow init.sh (migrate on PostgreSQL + admin): {elapsed:.1f} s")


def test_mlflow_server_script_serves_from_postgres_and_s3(stack, s3_server, tmp_path: Path):
    """docker/mlflow/mlflow-server.sh as compose runs it (its own database and its own
    scoped S3 user), with moto's S3 standing in for MinIO."""
    bucket = f"mlflow-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    port = free_port()
    env = {k: v.replace(SECRETS_MOUNT, str(stack["secrets"]))
           for k, v in _rendered_environment("mlflow").items()}  # fmt: skip
    env |= {
        "MLFLOW_DB_USER": stack["names"]["mlflow"],
        "MLFLOW_DB_NAME": stack["names"]["mlflow"],
        "MLFLOW_DB_HOSTPORT": stack["hostport"],
        "MLFLOW_S3_ENDPOINT_URL": s3_server.url,
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{bucket}/",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_SERVER_ALLOWED_HOSTS": "127.0.0.1,127.0.0.1:*,localhost,localhost:*",
    }
    log = tmp_path / "mlflow.log"
    start = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["sh", str(_staged_scripts("mlflow", tmp_path) / "mlflow-server.sh"), "--workers", "1"],
            env={"PATH": f"{VENV_BIN}:{os.environ['PATH']}", "HOME": str(tmp_path), **env},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        uri = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_until(
                    lambda: (
                        proc.poll() is None
                        and httpx.get(f"{uri}/health", timeout=2).status_code == 200
                    ),
                    timeout=180,
                    what="mlflow-server.sh",
                )
            except TimeoutError as exc:
                raise AssertionError(log.read_text(errors="replace")[-3000:]) from exc
            started = time.monotonic() - start
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=uri)
            experiment = client.create_experiment(f"compose-{uuid.uuid4().hex[:6]}")
            run = client.create_run(experiment)
            artifact = tmp_path / "note.txt"
            artifact.write_text("served through the server")
            client.log_artifact(run.info.run_id, str(artifact))
        finally:
            stop_process_group(proc, timeout=10)
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.endswith("/note.txt") for k in keys), keys
    engine = sa.create_engine(_url(stack, "mlflow"))
    with engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT count(*) FROM runs WHERE run_uuid = :r"), {"r": run.info.run_id}
        ).scalar_one()
    engine.dispose()
    assert stored == 1
    print(f"mlflow-server.sh up on PostgreSQL + S3 in {started:.1f} s")
