"""The stack's secrets, run here: secrets-init generates them, every consumer reads them.

docker/secrets/secrets-init.sh runs as it is (POSIX sh, coreutils); the entrypoints of lakeFS,
MinIO, mc, MLflow and Grafana run as they are with the one binary they finally exec replaced
by a recorder (no such binaries here), and Airflow reads its sensitive options and
Connections through its own configuration code with the compose environment. The defect
class: no secret left at an upstream default, none committed, none too weak for its use.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_compose import (
    COMPOSE,
    DOCKER,
    ENV_FILE,
    ROOT,
    SECRETS_MOUNT,
    _environment,
    _rendered_environment,
    _run_secrets_init,
    _services,
    _staged_scripts,
)

pytestmark = pytest.mark.unit

# Values that upstream projects ship as defaults or documentation examples: none may be used.
UPSTREAM_DEFAULTS = {
    "minioadmin",  # MinIO root user and password
    "AKIAIOSFOLQUICKSTART",  # lakeFS quick-start access key id
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",  # lakeFS quick-start / AWS docs secret
    "AKIAIOSFODNN7EXAMPLE",  # AWS documentation access key id
    "THIS_MUST_BE_CHANGED_IN_PRODUCTION",  # lakeFS auth.encrypt.secret_key default
    "OVERRIDE_THIS_SIGNING_SECRET_DEFAULT",  # lakeFS blockstore.signing.secret_key default
    "airflow",  # apache/airflow compose: admin and database passwords
    "admin",  # Grafana's admin password
    "postgres",
    "",  # an empty Fernet key means "store connections unencrypted"
}
MIN_LENGTH = {"airflow_jwt_secret": 64}  # bytes; HS512 wants a key as long as its hash
# Shapes the consumers demand.
MINIO_SECRETS = {"minio_root_password", "minio_lakefs_secret_key", "minio_mlflow_secret_key"}


def _secrets(directory: Path) -> dict[str, str]:
    return {
        p.name: p.read_text()
        for p in directory.iterdir()
        if not p.name.startswith(".") and p.name not in {"airflow_connections.json"}
        and p.name != "airflow_sql_alchemy_conn"
    }  # fmt: skip


@pytest.fixture
def generated(tmp_path: Path) -> Path:
    directory = tmp_path / "secrets"
    _run_secrets_init(directory)
    return directory


def _recorder(path: Path, name: str, body: str = "") -> Path:
    """An executable that records its arguments and environment as JSON, then runs ``body``."""
    script = path / name
    script.write_text(
        "#!/bin/sh\n"
        f'{shlex.quote(sys.executable)} -c "import json, os, sys; '
        f"print(json.dumps({{'argv': sys.argv[1:], 'env': dict(os.environ)}}))\" \"$@\" "
        f'>> "$RECORD"\n{body}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _run_entrypoint(service: str, target: str, tmp_path: Path, secrets: Path, **env: str):
    """Run the script mounted at ``target`` with ``service``'s compose environment and
    command, the secrets directory in place of the volume, and ``env`` on top."""
    script = _staged_scripts(service, tmp_path) / target.removeprefix("/scripts/")
    assert script.is_file(), f"{service} mounts nothing at {target}"
    rendered = _rendered_environment(service)
    rendered = {k: v.replace(SECRETS_MOUNT, str(secrets)) for k, v in rendered.items()}
    record = tmp_path / f"{service}.jsonl"
    run = subprocess.run(
        ["sh", str(script), *_command(service)],
        env={"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", **rendered,
             "RECORD": str(record), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    return run, _records(record)


def _command(service: str) -> list[str]:
    """What compose passes to an overridden entrypoint: the service's command (a list)."""
    svc = _services()[service]
    if "entrypoint" not in svc:
        return []  # the script is the command itself
    command = svc.get("command") or []
    return command.split() if isinstance(command, str) else list(command)


# --- secrets-init ------------------------------------------------------------------------


def test_secrets_are_random_strong_and_kept(tmp_path: Path):
    first, second = tmp_path / "a", tmp_path / "b"
    _run_secrets_init(first)
    before = _secrets(first)
    _run_secrets_init(first)  # a restart keeps every secret
    assert _secrets(first) == before
    _run_secrets_init(second)  # another stack gets other secrets
    assert len(before) >= 18
    for name, value in before.items():
        assert value != _secrets(second)[name], f"{name} is not random"
        assert value not in UPSTREAM_DEFAULTS, f"{name} is an upstream default"
        assert len(value) >= MIN_LENGTH.get(name, 20), f"{name} is too short"
        assert value.isascii() and value.isprintable() and " " not in value, name
        mode = stat.S_IMODE((first / name).stat().st_mode)
        assert mode == 0o444, f"{name}: mode {oct(mode)}"
    for name in MINIO_SECRETS:
        assert 8 <= len(before[name]) <= 40, f"{name}: MinIO takes 8 to 40 characters"


def test_fernet_and_jwt_keys_are_usable(generated: Path):
    from cryptography.fernet import Fernet

    token = Fernet((generated / "airflow_fernet_key").read_text().encode()).encrypt(b"conn")
    assert token
    jwt = (generated / "airflow_jwt_secret").read_bytes()
    assert len(jwt) >= 64, "HS512 needs a key of at least 64 bytes"
    key_id = (generated / "lakefs_access_key_id").read_text()
    assert key_id.startswith("AKIA") and len(key_id) == 20 and key_id.isalnum()


def test_no_generated_value_and_no_upstream_default_is_in_the_repository(generated: Path):
    files = [COMPOSE, ENV_FILE, *sorted(p for p in DOCKER.rglob("*") if p.is_file())]
    texts = {p: p.read_text() for p in files}
    for name, value in _secrets(generated).items():
        for path, text in texts.items():
            assert value not in text, f"{path.relative_to(ROOT)} holds generated {name}"
    for default in UPSTREAM_DEFAULTS - {"", "airflow", "admin", "postgres"}:
        for path, text in texts.items():
            if path == ENV_FILE:
                continue  # its PAWPAW_* lines are the emulator's (embedded profile) example keys
            assert default not in text, f"{path.relative_to(ROOT)} holds {default!r}"


def test_show_prints_the_logins_people_need(generated: Path):
    shown = _run_secrets_init(generated, "show").stdout
    for name in ("airflow_admin_password", "grafana_admin_password", "minio_root_password",
                 "lakefs_access_key_id", "lakefs_secret_access_key"):  # fmt: skip
        assert (generated / name).read_text() in shown, name
    assert (
        "postgres_password" not in shown
        and (generated / "postgres_password").read_text() not in shown
    )


# --- every consumer, run -------------------------------------------------------------------


def test_lakefs_starts_with_its_own_secrets_and_scoped_minio_user(tmp_path: Path, generated: Path):
    (tmp_path / "bin").mkdir()
    lakefs = _recorder(tmp_path / "bin", "lakefs")
    run, calls = _run_entrypoint(
        "lakefs", "/scripts/lakefs-entrypoint.sh", tmp_path, generated, LAKEFS_BINARY=str(lakefs)
    )
    assert run.returncode == 0, run.stderr
    setup, serve = calls
    assert setup["argv"] == [
        "setup", "--user-name", "admin",
        "--access-key-id", (generated / "lakefs_access_key_id").read_text(),
        "--secret-access-key", (generated / "lakefs_secret_access_key").read_text(),
    ]  # fmt: skip
    assert serve["argv"] == ["run"]
    env = serve["env"]
    assert (
        env["LAKEFS_AUTH_ENCRYPT_SECRET_KEY"]
        == (generated / "lakefs_encrypt_secret_key").read_text()
    )
    assert env["LAKEFS_BLOCKSTORE_SIGNING_SECRET_KEY"] == (
        (generated / "lakefs_signing_secret_key").read_text()
    )
    assert env["LAKEFS_BLOCKSTORE_S3_CREDENTIALS_ACCESS_KEY_ID"] == "pawpaw-lakefs"
    assert env["LAKEFS_BLOCKSTORE_S3_CREDENTIALS_SECRET_ACCESS_KEY"] == (
        (generated / "minio_lakefs_secret_key").read_text()
    )
    assert (generated / "minio_root_password").read_text() not in json.dumps(env)
    db = env["LAKEFS_DATABASE_POSTGRES_CONNECTION_STRING"]
    assert db == (
        f"postgres://lakefs:{(generated / 'lakefs_db_password').read_text()}"
        "@postgres:5432/lakefs?sslmode=disable"
    )


def test_lakefs_entrypoint_tolerates_a_done_setup_and_stops_on_a_broken_one(
    tmp_path: Path, generated: Path
):
    (tmp_path / "bin").mkdir()
    done = _recorder(
        tmp_path / "bin",
        "done",
        'case "$1" in setup) echo "Setup is already complete." >&2; exit 1;; esac',
    )
    run, calls = _run_entrypoint(
        "lakefs", "/scripts/lakefs-entrypoint.sh", tmp_path, generated, LAKEFS_BINARY=str(done)
    )
    assert run.returncode == 0 and [c["argv"][0] for c in calls] == ["setup", "run"], run.stderr
    broken = _recorder(tmp_path / "bin", "broken", 'echo "connection refused" >&2; exit 1')
    run, calls = _run_entrypoint(
        "lakefs", "/scripts/lakefs-entrypoint.sh", tmp_path, generated,
        LAKEFS_BINARY=str(broken), RECORD=str(tmp_path / "broken.jsonl"),
    )  # fmt: skip
    assert run.returncode == 1 and "connection refused" in run.stderr
    assert [c["argv"][0] for c in _records(tmp_path / "broken.jsonl")] == ["setup"]


def test_minio_server_gets_the_generated_root_password(tmp_path: Path, generated: Path):
    (tmp_path / "bin").mkdir()
    minio = _recorder(tmp_path / "bin", "minio")
    run, (call,) = _run_entrypoint(
        "minio", "/scripts/minio-entrypoint.sh", tmp_path, generated, MINIO_BINARY=str(minio)
    )
    assert run.returncode == 0, run.stderr
    assert call["argv"] == _services()["minio"]["command"]
    assert call["env"]["MINIO_ROOT_PASSWORD"] == (generated / "minio_root_password").read_text()
    assert call["env"]["MINIO_ROOT_USER"] == "pawpaw-minio"
    assert "MINIO_ROOT_PASSWORD_FILE" not in call["env"]


def test_minio_init_creates_one_bucket_scoped_user_per_client(tmp_path: Path, generated: Path):
    (tmp_path / "bin").mkdir()
    # mc answers like a MinIO that has the lakeFS policy attached already (a restart).
    _recorder(
        tmp_path / "bin", "mc",
        'case "$*" in *"policy attach pawpaw pawpaw-lakefs"*) '
        'echo "mc: <ERROR> The specified policy change is already in effect." >&2; exit 1;; esac',
    )  # fmt: skip
    policies = DOCKER / "minio" / "policies"
    run, calls = _run_entrypoint(
        "minio-init", "/scripts/minio-init.sh", tmp_path, generated,
        MINIO_POLICIES_DIR=str(policies),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    argv = [c["argv"] for c in calls]
    root = (generated / "minio_root_password").read_text()
    assert argv[0] == ["alias", "set", "pawpaw", "http://minio:9000", "pawpaw-minio", root]
    assert ["mb", "--ignore-existing", "pawpaw/lakefs"] in argv
    assert ["mb", "--ignore-existing", "pawpaw/mlflow"] in argv
    for user, secret, policy in [
        ("pawpaw-lakefs", "minio_lakefs_secret_key", "pawpaw-lakefs"),
        ("pawpaw-mlflow", "minio_mlflow_secret_key", "pawpaw-mlflow"),
    ]:
        assert ["admin", "user", "add", "pawpaw", user, (generated / secret).read_text()] in argv
        assert ["admin", "policy", "create", "pawpaw", policy, f"{policies}/{policy}.json"] in argv
        assert ["admin", "policy", "attach", "pawpaw", policy, "--user", user] in argv
    assert sum(root in json.dumps(a) for a in argv) == 1  # root keys: the alias only


def test_minio_init_fails_on_a_real_mc_error(tmp_path: Path, generated: Path):
    (tmp_path / "bin").mkdir()
    _recorder(
        tmp_path / "bin",
        "mc",
        'case "$*" in *"policy attach"*) echo "access denied" >&2; exit 1;; esac',
    )
    run, _ = _run_entrypoint(
        "minio-init", "/scripts/minio-init.sh", tmp_path, generated,
        MINIO_POLICIES_DIR=str(DOCKER / "minio" / "policies"),
    )  # fmt: skip
    assert run.returncode != 0 and "access denied" in run.stderr


def test_mlflow_server_uses_its_scoped_minio_user_and_database(tmp_path: Path, generated: Path):
    (tmp_path / "bin").mkdir()
    _recorder(tmp_path / "bin", "mlflow")
    run, (call,) = _run_entrypoint("mlflow", "/scripts/mlflow-server.sh", tmp_path, generated)
    assert run.returncode == 0, run.stderr
    env = call["env"]
    assert env["AWS_ACCESS_KEY_ID"] == "pawpaw-mlflow"
    assert env["AWS_SECRET_ACCESS_KEY"] == (generated / "minio_mlflow_secret_key").read_text()
    assert env["MLFLOW_BACKEND_STORE_URI"] == (
        f"postgresql+psycopg2://mlflow:{(generated / 'mlflow_db_password').read_text()}"
        "@postgres:5432/mlflow"
    )
    argv = call["argv"]
    assert argv[0] == "server" and "--serve-artifacts" in argv
    assert argv[argv.index("--artifacts-destination") + 1] == "s3://mlflow/"


def test_grafana_gets_its_admin_and_database_passwords(tmp_path: Path, generated: Path):
    (tmp_path / "bin").mkdir()
    run_sh = _recorder(tmp_path / "bin", "run.sh")
    run, (call,) = _run_entrypoint(
        "grafana", "/scripts/grafana-entrypoint.sh", tmp_path, generated, GRAFANA_RUN=str(run_sh)
    )
    assert run.returncode == 0, run.stderr
    env = call["env"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == (generated / "grafana_admin_password").read_text()
    assert env["GRAFANA_DB_PASSWORD"] == (generated / "grafana_db_password").read_text()


def test_entrypoints_refuse_a_missing_secret(tmp_path: Path):
    (tmp_path / "bin").mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    lakefs = _recorder(tmp_path / "bin", "lakefs")
    run, calls = _run_entrypoint(
        "lakefs", "/scripts/lakefs-entrypoint.sh", tmp_path, empty, LAKEFS_BINARY=str(lakefs)
    )
    assert run.returncode != 0 and not calls and "missing" in run.stderr


_AIRFLOW_PROBE = """
import json
from airflow.configuration import conf
from pawpaw_airflow import pipeline_settings

s = pipeline_settings()
print(json.dumps({
    "sql_alchemy_conn": conf.get("database", "sql_alchemy_conn"),
    "fernet_key": conf.get("core", "fernet_key"),
    "jwt_secret": conf.get("api_auth", "jwt_secret"),
    "api_secret_key": conf.get("api", "secret_key"),
    "executor": conf.get("core", "executor"),
    "lakefs_endpoint": s.lakefs_endpoint,
    "lakefs_access_key_id": s.lakefs_access_key_id,
    "lakefs_secret": s.lakefs_secret_access_key.get_secret_value(),
    "drift_db_url": s.drift_db_url,
    "tracking_uri": s.tracking_uri,
}))
"""


def test_airflow_reads_its_secrets_and_connections_from_the_volume(tmp_path: Path, generated: Path):
    """Airflow's own configuration code with the compose environment (paths moved to the
    generated directory): the *_CMD options and the LocalFilesystemBackend Connections that
    plugins/pawpaw_airflow turns into the pipeline's settings."""
    env = {
        k: v.replace(SECRETS_MOUNT, str(generated))
        for k, v in _rendered_environment("airflow-scheduler").items()
        if k.startswith(("AIRFLOW__", "PAWPAW_"))
    }
    home = tmp_path / "airflow-home"
    home.mkdir()
    run = subprocess.run(
        [sys.executable, "-c", _AIRFLOW_PROBE],
        env={
            "PATH": os.environ["PATH"], "HOME": str(tmp_path), "AIRFLOW_HOME": str(home),
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
            "PAWPAW_DATA_DIR": str(tmp_path / "data"), **env,
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    read = lambda name: (generated / name).read_text()  # noqa: E731
    assert got["sql_alchemy_conn"] == read("airflow_sql_alchemy_conn")
    assert got["fernet_key"] == read("airflow_fernet_key")
    assert got["jwt_secret"] == read("airflow_jwt_secret")
    assert got["api_secret_key"] == read("airflow_api_secret_key")
    assert got["executor"] == "LocalExecutor"
    assert got["lakefs_endpoint"] == "http://lakefs:8000"
    assert got["lakefs_access_key_id"] == read("lakefs_access_key_id")
    assert got["lakefs_secret"] == read("lakefs_secret_access_key")
    assert got["drift_db_url"] == (
        f"postgresql+psycopg2://monitoring:{read('monitoring_db_password')}@postgres:5432/monitoring"
    )
    assert got["tracking_uri"] == "http://mlflow:5000"


def test_airflow_init_reads_the_generated_admin_password():
    env = _environment("airflow-init")
    assert env["_PAWPAW_ADMIN_PASSWORD_FILE"] == f"{SECRETS_MOUNT}/airflow_admin_password"
    assert "_PAWPAW_ADMIN_PASSWORD" not in env
