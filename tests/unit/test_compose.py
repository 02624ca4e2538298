"""The production stack's structure: docker-compose.yaml, docker/, and the compose part of .env.

Docker cannot run on our machines, so this holds the files to everything that can be checked
without it: services, health checks, dependency conditions and order, profiles (and which
cross-profile dependencies are optional), variables, mounts, where every secret comes from,
the Airflow containers' shared settings, Grafana's provisioning and the SQL of its dashboard and
alert rules against the drift tables' schema, scripts' syntax, pinned versions, and `docker
compose config`. The stack's own scripts run in test_compose_secrets.py, test_compose_bento.py,
test_docker_image.py and tests/integration/test_compose_scripts.py; Grafana's alerting files in
test_grafana_provisioning.py, and its SQL against PostgreSQL in
tests/integration/test_grafana_queries.py.
"""

from __future__ import annotations

import graphlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.version import Version

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
ENV_FILE = ROOT / ".env"
DOCKER = ROOT / "docker"
DATASOURCES = DOCKER / "grafana" / "provisioning" / "datasources" / "monitoring.yaml"
DASHBOARD_PROVIDER = DOCKER / "grafana" / "provisioning" / "dashboards" / "pawpaw.yaml"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "pawpaw-drift.json"
ALERTING = DOCKER / "grafana" / "provisioning" / "alerting"
AIRFLOW_DOCKERFILE = DOCKER / "airflow" / "Dockerfile"
SECRETS_INIT = DOCKER / "secrets" / "secrets-init.sh"
SECRETS_MOUNT = "/run/pawpaw-secrets"
GPU_CHECK = ROOT / "scripts" / "gpu_check.sh"

REQUIRED_SERVICES = {
    "secrets-init",
    "postgres",
    "minio",
    "minio-init",
    "lakefs",
    "mlflow",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "redis",
    "airflow-worker",
    "airflow-worker-gpu",
    "airflow-flower",
    "grafana",
    "bento",
    "bento-cpu",
}
# Run to completion and exit; everything else serves and must report its health.
ONE_SHOT = {"secrets-init", "minio-init", "airflow-init", "airflow-cli"}
PROFILES = {
    "bento": {"gpu"},
    "bento-cpu": {"cpu"},
    "redis": {"celery", "flower", "gpu"},
    "airflow-worker": {"celery"},
    "airflow-worker-gpu": {"gpu"},
    "airflow-flower": {"flower"},
    "airflow-cli": {"debug"},
}
ALL_PROFILES = sorted(set().union(*PROFILES.values()))
EXECUTION_API_URL = "http://airflow-apiserver:8080/execution/"
DATASOURCE_UID = "pawpaw-monitoring"

# What the drift step writes (include/pawpaw/drift/store.py; Grafana may query nothing else).
_DRIFT_KEY = {"analysis_commit", "reference_commit", "model_version", "month"}
DRIFT_TABLES: dict[str, set[str]] = {
    "drift_runs": _DRIFT_KEY
    | {
        "n_reference",
        "n_analysis",
        "alert",
        "reasons",
        "rmse_reference",
        "rmse_analysis",
        "mae_analysis",
        "estimated_rmse",
        "estimated_mae",
        "estimate_error",
        "rmse_limit",
    },
    "drift_tests": _DRIFT_KEY | {"method", "column_name", "statistic", "p_value", "alpha", "alert"},
    "drift_metrics": _DRIFT_KEY
    | {
        "chunk_index",
        "chunk_start",
        "chunk_end",
        "timestamp",
        "column_name",
        "metric",
        "value",
        "lower_threshold",
        "upper_threshold",
        "alert",
    },
}
# Values of method / metric / column_name that SQL may compare against.
DRIFT_VALUES = {
    "kolmogorov_smirnov",
    "chi2",
    "data_reconstruction",
    "domain_classifier",
    "embeddings",
    "performance",
    "reconstruction_error",
    "rmse",
    "mae",
    "estimated_rmse",
    "estimated_mae",
}
# Plain SQL that the dashboard may use besides the drift tables' names.
_SQL_WORDS = frozenset(
    """select from where and or not in is null as order by desc asc limit offset with join left
    inner using on group having distinct count max min avg sum between true false case when
    then else end coalesce nullif to_char length""".split()  # noqa: SIM905 (reads better as text)
)
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")
_SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|_KEY$|ACCESS_KEY_ID")


def _is_secret(key: str) -> bool:
    """A variable that holds a credential (a path to a file of them, the command that reads
    one, or where Airflow looks them up does not)."""
    return (
        bool(_SECRET_KEY.search(key))
        and not key.endswith(("_FILE", "_PATH", "_DIR", "_CMD"))
        and not key.startswith("AIRFLOW__SECRETS__")
    )


# --- loading ----------------------------------------------------------------------------


@cache
def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


@cache
def _env() -> dict[str, str]:
    """.env as compose reads it (KEY=VALUE lines; no quoting is used in ours)."""
    env: dict[str, str] = {}
    for n, line in enumerate(ENV_FILE.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f".env line {n}: not KEY=VALUE: {line!r}"
        assert key not in env, f".env line {n}: {key} is defined twice"
        env[key] = value
    return env


def _strings(node: Any) -> Iterator[str]:
    """Every string value in a parsed YAML tree (keys excluded; comments never get here)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}; `$$` is a literal `$`."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        if op in (":-", "-"):
            return env[name] if (env.get(name) if op == ":-" else name in env) else arg
        if op in (":?", "?"):
            assert env.get(name) if op == ":?" else name in env, f"{name}: {arg}"
        return env.get(name, "")

    parts = value.split("$$")
    return "$".join(_VAR.sub(one, part) for part in parts)


def _environment(service: str) -> dict[str, str]:
    env = _services()[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: write environment as a mapping"
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _rendered_environment(service: str) -> dict[str, str]:
    return {k: _interpolate(v, _env()) for k, v in _environment(service).items()}


def _volumes(service: str) -> Iterator[tuple[str, str, str]]:
    """(type, source, target) of each mount, short or long syntax."""
    for vol in _services()[service].get("volumes", []):
        if isinstance(vol, dict):
            yield vol["type"], vol.get("source", ""), vol["target"]
            continue
        source, _, rest = vol.partition(":")
        target = rest.split(":")[0]
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        yield kind, source, target


def _mounted_script(service: str, target: str) -> Path:
    """The repository file bind-mounted at ``target`` in ``service``."""
    for kind, source, tgt in _volumes(service):
        if kind == "bind" and tgt == target:
            return (ROOT / source).resolve()
    raise AssertionError(f"{service} mounts nothing at {target}")


def _staged_scripts(service: str, directory: Path) -> Path:
    """Copies of the repository files ``service`` bind-mounts under /scripts/, laid out as in
    the container (an entrypoint finds what it sources beside it); returns the folder."""
    staged = directory / "scripts"
    staged.mkdir(parents=True, exist_ok=True)
    for kind, source, target in _volumes(service):
        if kind == "bind" and target.startswith("/scripts/"):
            shutil.copy((ROOT / source).resolve(), staged / target.removeprefix("/scripts/"))
    return staged


def _depends_on(service: str) -> dict[str, dict[str, Any]]:
    deps = _services()[service].get("depends_on", {})
    assert isinstance(deps, dict), f"{service}: depends_on must map services to conditions"
    return deps


def _profiles(service: str) -> set[str]:
    return set(_services()[service].get("profiles") or [])


def _run_secrets_init(directory: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """docker/secrets/secrets-init.sh as the compose service runs it, into ``directory``."""
    base = {k: v for k, v in _rendered_environment("secrets-init").items()}
    run = subprocess.run(
        ["sh", str(SECRETS_INIT), *args],
        env={"PATH": os.environ["PATH"], **base, "SECRETS_DIR": str(directory), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What secrets-init writes on a first start, with the compose environment."""
    directory = tmp_path_factory.mktemp("pawpaw-secrets")
    _run_secrets_init(directory)
    return directory


# --- services, health, dependencies ------------------------------------------------------


def test_required_services_exist():
    missing = REQUIRED_SERVICES - set(_services())
    assert not missing, f"docker-compose.yaml lacks services: {sorted(missing)}"


def test_long_running_services_have_healthchecks_and_one_shots_do_not_restart():
    for name, svc in _services().items():
        if name in ONE_SHOT:
            assert svc.get("restart") == "no", f"{name}: a one-shot must not be restarted"
            continue
        test = svc.get("healthcheck", {}).get("test")
        assert test and test != ["NONE"], f"{name}: long-running service without a healthcheck"
        assert not svc["healthcheck"].get("disable"), f"{name}: healthcheck disabled"
        assert svc.get("restart") in {"always", "unless-stopped"}, f"{name}: no restart policy"


def test_depends_on_uses_conditions_on_existing_services():
    services = _services()
    for name in services:
        for dep, spec in _depends_on(name).items():
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            condition = (spec or {}).get("condition")
            assert condition in {"service_healthy", "service_completed_successfully"}, (
                f"{name} -> {dep}: condition {condition!r} (want healthy / completed)"
            )
            assert set(spec) <= {"condition", "required", "restart"}, (name, dep, spec)
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s missing health"
            else:
                assert dep in ONE_SHOT, f"{name} waits for long-running {dep} to exit"


def test_dependency_graph_has_no_cycle_and_starts_from_storage():
    graph = {name: set(_depends_on(name)) for name in _services()}
    order = list(graphlib.TopologicalSorter(graph).static_order())  # CycleError on a cycle
    before = {name: i for i, name in enumerate(order)}
    for first, then in [
        ("secrets-init", "postgres"),
        ("secrets-init", "minio"),
        ("postgres", "lakefs"),
        ("minio-init", "lakefs"),
        ("minio-init", "mlflow"),
        ("airflow-init", "airflow-scheduler"),
        ("lakefs", "airflow-scheduler"),
        ("mlflow", "airflow-scheduler"),
        ("airflow-apiserver", "airflow-worker"),
        ("airflow-apiserver", "airflow-worker-gpu"),
        ("airflow-apiserver", "airflow-scheduler"),
    ]:
        assert before[first] < before[then], f"{then} may start before {first}"


def test_airflow_components_wait_for_the_migration():
    for name in _services():
        if name.startswith("airflow-") and name not in {"airflow-init", "airflow-cli"}:
            deps = _depends_on(name)
            assert deps.get("airflow-init", {}).get("condition") == (
                "service_completed_successfully"
            ), f"{name} must wait for airflow-init"
            assert deps.get("postgres", {}).get("condition") == "service_healthy", name


def test_services_that_read_secrets_wait_for_them():
    for name in _services():
        if name == "secrets-init":
            continue
        mounts = {(source, target) for _, source, target in _volumes(name)}
        if ("pawpaw-secrets", SECRETS_MOUNT) in mounts:
            dep = _depends_on(name).get("secrets-init") or {}
            transitively = any(
                (_depends_on(d).get("secrets-init") or {}).get("condition")
                == "service_completed_successfully"
                for d in _depends_on(name)
            )
            assert dep.get("condition") == "service_completed_successfully" or transitively, (
                f"{name} reads {SECRETS_MOUNT} before secrets-init wrote it"
            )
    targets = [t for _, source, t in _volumes("secrets-init") if source == "pawpaw-secrets"]
    assert targets == [SECRETS_MOUNT]


def test_profiles_keep_a_plain_up_working():
    services = _services()
    for name, profiles in PROFILES.items():
        assert _profiles(name) == profiles, f"{name} belongs to {sorted(profiles)}"
    default = {n for n, s in services.items() if not s.get("profiles")}
    assert REQUIRED_SERVICES - set(PROFILES) <= default
    for name in default:
        for dep, spec in _depends_on(name).items():
            assert dep in default or spec.get("required") is False, (
                f"plain `docker compose up` of {name} needs profiled {dep}"
            )


def test_dependencies_across_profiles_are_optional():
    """A service that can start without a dependency's profile must not require it
    (`required: false`, Compose >= 2.20): else a plain `up` fails, or the service cannot wait
    for the profiled one (the scheduler and api-server for redis under `--profile celery`)."""
    services = _services()
    checked = 0
    for name in services:
        for dep, spec in _depends_on(name).items():
            mine, theirs = _profiles(name), _profiles(dep)
            # `name` is started by no profile at all, or by one that does not start `dep`.
            optional = bool(theirs) and (not mine or not mine <= theirs)
            if optional:
                checked += 1
                assert spec.get("required") is False, (
                    f"{name} -> {dep}: {dep} is only in {sorted(theirs)}; mark it required: false"
                )
            else:
                assert spec.get("required", True) is True, f"{name} -> {dep} is always there"
    assert checked >= 2  # the scheduler and the api-server wait for redis when it runs
    for name in ("airflow-scheduler", "airflow-apiserver"):
        assert _depends_on(name)["redis"] == {"condition": "service_healthy", "required": False}


def test_worker_scales_and_celery_is_wired():
    worker = _services()["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker, "blocks --scale"
    assert worker["command"] == "celery worker"
    env = _rendered_environment("airflow-worker")
    assert urlsplit(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
    # No RESULT_BACKEND: the provider then uses db+ the SQL Alchemy connection (from its _CMD).
    assert "AIRFLOW__CELERY__RESULT_BACKEND" not in env
    # The executor comes from .env, not from a shell export: a later plain `up` keeps it.
    raw = _environment("airflow-worker")["AIRFLOW__CORE__EXECUTOR"]
    assert raw == "${AIRFLOW_EXECUTOR:-LocalExecutor}"
    assert _env()["AIRFLOW_EXECUTOR"] == "LocalExecutor"
    assert "AIRFLOW__CORE__EXECUTOR" not in _env()  # compose reads .env, Airflow never does
    flower = _services()["airflow-flower"]
    assert flower["command"] == "celery flower" and any(
        p.endswith(":5555") for p in flower["ports"]
    )


def test_gpu_worker_serves_the_gpu_queue_with_a_gpu_and_cuda_torch():
    gpu = _services()["airflow-worker-gpu"]
    assert gpu["command"].split()[:2] == ["celery", "worker"]
    args = gpu["command"].split()
    assert args[args.index("--queues") + 1] == "gpu"
    assert gpu["build"]["args"]["TORCH_VARIANT"] == "cuda"
    assert _services()["airflow-scheduler"]["build"]["args"]["TORCH_VARIANT"] == "cpu"
    assert gpu["image"] != _services()["airflow-scheduler"]["image"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    # The cluster policy routes train_challenger to the queue the .env names (off by default).
    env = _environment("airflow-scheduler")
    assert env["PAWPAW_GPU_QUEUE"] == "${AIRFLOW_GPU_QUEUE:-}" and _env()["AIRFLOW_GPU_QUEUE"] == ""


# --- variables and secrets ----------------------------------------------------------------


def test_every_variable_without_default_is_defined_in_env():
    env = _env()
    for text in _strings(_compose()):
        for part in text.split("$$"):
            for m in _VAR.finditer(part):
                name, op, default = m["name"], m["op"], m["arg"]
                if op in (":-", "-"):
                    # A default that disagrees with .env would change behaviour unnoticed.
                    if name in env:
                        assert env[name] == default, f"${{{name}}}: default {default!r} != .env"
                    continue
                assert name in env, f"${{{name}}} is used in docker-compose.yaml, not in .env"
                if op == ":?":
                    assert env[name], f"{name} is required but empty in .env"


def test_no_bare_dollar_variables():
    """`$NAME` would be expanded by compose from the host; container shells need `$$NAME`."""
    for text in _strings(_compose()):
        for part in text.split("$$"):
            bare = re.findall(r"\$(?!\{)[A-Za-z_]\w*", part)
            assert not bare, f"unescaped {bare} in {text!r}"


def test_no_secret_in_compose_or_env():
    """Every credential reaches a service as a file of the secrets volume (a *_FILE variable,
    an Airflow *_CMD option, an entrypoint that reads it): none is in compose or .env."""
    for name, svc in _services().items():
        for key, value in _environment(name).items():
            if key.endswith("_CMD"):
                assert re.fullmatch(rf"cat {SECRETS_MOUNT}/\w+", value), (name, key, value)
            elif key == "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE":
                # airflow-init writes it from the generated admin password (airflow-auth volume)
                assert value.startswith("/opt/airflow/auth/"), value
            elif key.endswith("_FILE"):
                assert value.startswith(f"{SECRETS_MOUNT}/"), (name, key, value)
            elif _is_secret(key):
                raise AssertionError(f"{name}.{key} carries a secret in the compose file")
        for s in _strings(svc):
            s = _VAR.sub("\x00", s.replace("$$", ""))
            passwords = re.findall(r"\b[a-z][a-z0-9+.]*://[^/@:\s]*:([^@\s/]*)@", s)
            assert not passwords, f"{name}: a password in a URL in {s!r}"
    secret_keys = [k for k in _env() if _is_secret(k)]
    # The embedded profile's lakeFS emulator keys (the well-known quick-start example) only.
    assert set(secret_keys) == {"PAWPAW_LAKEFS_ACCESS_KEY_ID", "PAWPAW_LAKEFS_SECRET_ACCESS_KEY"}
    for key in secret_keys:
        assert any(mark in _env()[key] for mark in ("EXAMPLE", "QUICKSTART")), key
    assert all("$" not in v for v in _env().values()), ".env values must not contain `$`"
    text = ENV_FILE.read_text()
    assert "development defaults only" in text.lower()


def test_every_secret_file_a_service_reads_is_generated(secrets_dir: Path):
    generated = {p.name for p in secrets_dir.iterdir() if not p.name.startswith(".")}
    wanted: set[tuple[str, str]] = set()
    for name in _services():
        for key, value in _environment(name).items():
            if value.startswith(f"{SECRETS_MOUNT}/") or value.startswith(f"cat {SECRETS_MOUNT}/"):
                wanted.add((f"{name}.{key}", value.rsplit("/", 1)[1]))
            if "_FILE" in key or "connections_file_path" in value:
                for file in re.findall(rf"{SECRETS_MOUNT}/(\w[\w.]*)", value):
                    wanted.add((f"{name}.{key}", file))
    for script in sorted(DOCKER.rglob("*.sh")):
        text = script.read_text()
        reads = re.findall(r"\$\((?:secret|get) (\w+)\)", text)
        reads += re.findall(r'^user "\$\w+" (\w+) ', text, re.M)  # minio-init's users
        wanted |= {(script.relative_to(ROOT).as_posix(), file) for file in reads}
    assert len(wanted) >= 20
    missing = sorted((who, file) for who, file in wanted if file not in generated)
    assert not missing, f"read but never generated by secrets-init: {missing}"


# --- mounts, builds, versions -------------------------------------------------------------


def test_bind_mounts_exist_in_the_repo_and_named_volumes_are_declared():
    declared = set(_compose().get("volumes") or {})
    for name in _services():
        for kind, source, target in _volumes(name):
            assert target.startswith("/"), f"{name}: target {target!r} is not absolute"
            if kind == "bind":
                path = (ROOT / source).resolve()
                assert path.is_relative_to(ROOT), f"{name}: {source} leaves the repository"
                assert path.exists(), f"{name}: bind-mounted {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source!r} is not declared"


def test_build_contexts_and_dockerfiles_exist():
    built = 0
    for name, svc in _services().items():
        if build := svc.get("build"):
            context = ROOT / build["context"]
            assert context.is_dir(), f"{name}: build context {context} is missing"
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
            built += 1
    assert built >= 3  # airflow CPU (+ every service sharing its anchor), airflow GPU, mlflow


def test_airflow_image_copies_only_what_its_dockerignore_allows():
    copies = re.findall(r"^COPY\s+(?!--from)(.+)$", AIRFLOW_DOCKERFILE.read_text(), re.M)
    ignore = (AIRFLOW_DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore, "the dockerignore must be an allowlist (start from `*`)"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = []
    for line in copies:
        words = [w for w in line.split() if not w.startswith("--")]
        sources += words[:-1]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
        assert src.rstrip("/") in allowed, f"{src} is copied but excluded by the dockerignore"
    assert not {".env", ".venv", "data"} & allowed
    assert {"uv.lock", "pyproject.toml"} <= allowed  # the image is built from the lock


def test_pinned_versions_match_the_project():
    env = _env()
    dockerfile = AIRFLOW_DOCKERFILE.read_text()
    assert re.search(
        r"^FROM apache/airflow:slim-\$\{AIRFLOW_VERSION\}-python\$\{PYTHON_VERSION\}$",
        dockerfile,
        re.M,
    )
    assert re.search(r"^ARG PYTHON_VERSION=3\.11$", dockerfile, re.M)  # pyproject: ==3.11.*
    airflow_arg = re.search(r"^ARG AIRFLOW_VERSION=(\S+)$", dockerfile, re.M)[1]
    assert airflow_arg == env["AIRFLOW_VERSION"] == version("apache-airflow")
    mlflow_arg = re.search(
        r"^ARG MLFLOW_VERSION=(\S+)$", (DOCKER / "mlflow/Dockerfile").read_text(), re.M
    )
    assert mlflow_arg[1] == env["MLFLOW_VERSION"] == version("mlflow"), "server != client"
    for key, image in env.items():
        if key.endswith("_IMAGE") and not key.startswith("BENTO_"):
            tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
            assert tag and tag != "latest", f"{key}={image} is not pinned"


def test_lakefs_server_is_not_older_than_its_client():
    """lakefs-sdk is generated from lakeFS's own OpenAPI spec and shares its version numbers."""
    image = _env()["LAKEFS_IMAGE"]
    assert _services()["lakefs"]["image"] == f"${{LAKEFS_IMAGE:-{image}}}"
    server = Version(image.rsplit(":", 1)[1])
    client = Version(version("lakefs-sdk"))
    assert server.release[:2] >= client.release[:2], f"lakeFS {server} < lakefs-sdk {client}"


def _compose_clis() -> list[tuple[list[str], int]]:
    """(command, major version) of each compose CLI here: `docker compose` (v2 plugin),
    `docker-compose` (v1 from Debian, or v2), or $PAWPAW_COMPOSE_CLI; no engine needed."""
    found = []
    candidates = [["docker", "compose"], ["docker-compose"]]
    if os.environ.get("PAWPAW_COMPOSE_CLI"):
        candidates.insert(0, os.environ["PAWPAW_COMPOSE_CLI"].split())
    for cmd in candidates:
        if shutil.which(cmd[0]):
            probe = subprocess.run([*cmd, "version"], capture_output=True, text=True)
            m = re.search(r"version v?(\d+)\.", probe.stdout)
            if probe.returncode == 0 and m:
                found.append((cmd, int(m[1])))
    return found


def _without_required(node: Any) -> Any:
    """The compose tree with `required` dropped from every depends_on entry (Compose v1 does
    not know the key; v2 >= 2.20 does)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "depends_on" and isinstance(value, dict):
                value = {d: {k: v for k, v in (s or {}).items() if k != "required"}
                         for d, s in value.items()}  # fmt: skip
            out[key] = _without_required(value)
        return out
    if isinstance(node, list):
        return [_without_required(v) for v in node]
    return node


@pytest.mark.parametrize("profiles", [[], ["gpu"], ["celery"], ["celery", "flower"], ALL_PROFILES])
def test_docker_compose_config_accepts_the_file(profiles: list[str], tmp_path: Path):
    clis = _compose_clis()
    assert clis, (
        "no compose CLI: CI installs Debian's docker-compose (apt-get install docker-compose)"
    )
    args = [a for p in profiles for a in ("--profile", p)]
    for cli, major in clis:
        compose_file = COMPOSE
        if major < 2:
            # v1 rejects `required` (and only that: nothing else is removed). The key itself is
            # checked by test_dependencies_across_profiles_are_optional; a v2 CLI, where present
            # (`docker compose`, or PAWPAW_COMPOSE_CLI), checks this very file.
            compose_file = tmp_path / "docker-compose.v1.yaml"
            compose_file.write_text(yaml.safe_dump(_without_required(_compose()), sort_keys=False))
        run = subprocess.run(
            [*cli, "--project-directory", str(ROOT), "--env-file", str(ENV_FILE),
             "-f", str(compose_file), *args, "config", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert run.returncode == 0, f"{' '.join(cli)} (v{major}): {run.stderr}"


def test_shell_scripts_parse():
    scripts = [*DOCKER.rglob("*.sh"), GPU_CHECK]
    assert len(scripts) >= 10
    for script in scripts:
        first = script.read_text().splitlines()[0]
        shell = "bash" if "bash" in first else "sh"
        assert first.startswith("#!"), f"{script} has no shebang"
        assert shutil.which(shell), f"no {shell} to check {script}"
        run = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
        assert run.returncode == 0, f"{script}: {run.stderr}"
    # POSIX sh where the image has no bash (MinIO, mc, lakeFS's Alpine, Grafana, secrets-init)
    for script in ["secrets/secrets-init.sh", "minio/minio-entrypoint.sh", "minio/minio-init.sh",
                   "lakefs/lakefs-entrypoint.sh", "grafana/grafana-entrypoint.sh",
                   "mlflow/mlflow-server.sh", "secrets/read-secret.sh"]:  # fmt: skip
        assert (DOCKER / script).read_text().startswith("#!/bin/sh\n"), script
        if shutil.which("dash"):
            run = subprocess.run(["dash", "-n", str(DOCKER / script)], capture_output=True)
            assert run.returncode == 0, script


# --- what each component is told ----------------------------------------------------------


def test_airflow_services_share_jwt_secret_and_execution_api():
    airflow = [n for n in _services() if n.startswith("airflow-")]
    assert len(airflow) >= 8
    keys = [
        "AIRFLOW__API_AUTH__JWT_SECRET_CMD",
        "AIRFLOW__API_AUTH__JWT_ISSUER",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD",
        "AIRFLOW__CORE__EXECUTOR",
        "AIRFLOW__API__SECRET_KEY_CMD",
        "AIRFLOW__CORE__FERNET_KEY_CMD",
        "AIRFLOW__SECRETS__BACKEND_KWARGS",
    ]
    for key in keys:
        values = {n: _environment(n).get(key) for n in airflow}
        assert len(set(values.values())) == 1 and None not in values.values(), (key, values)
    env = _environment("airflow-scheduler")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == EXECUTION_API_URL
    ports = _services()["airflow-apiserver"]["ports"]
    assert any(p.endswith(":8080") for p in ports) and _services()["airflow-apiserver"][
        "command"
    ] == ("api-server")
    health = " ".join(_services()["airflow-apiserver"]["healthcheck"]["test"])
    assert "/api/v2/monitor/health" in health


def test_airflow_reads_its_sensitive_options_from_files():
    """Airflow honours *_CMD only for options it declares sensitive: a _CMD on any other key
    would be ignored silently (and the option left at its default)."""
    from airflow.configuration import conf

    sensitive = {(s.upper(), k.upper()) for s, k in conf.sensitive_config_values}
    for key in _environment("airflow-scheduler"):
        if key.startswith("AIRFLOW__") and key.endswith("_CMD"):
            section, option = key.removeprefix("AIRFLOW__").removesuffix("_CMD").split("__")
            assert (section, option) in sensitive, f"{key}: Airflow ignores _CMD there"


def test_airflow_connections_are_json_the_hooks_understand(secrets_dir: Path):
    env = _environment("airflow-scheduler")
    assert env["AIRFLOW__SECRETS__BACKEND"] == (
        "airflow.secrets.local_filesystem.LocalFilesystemBackend"
    )
    path = json.loads(env["AIRFLOW__SECRETS__BACKEND_KWARGS"])["connections_file_path"]
    conns = json.loads((secrets_dir / Path(path).name).read_text())
    assert {"lakefs_default", "mlflow_default", "monitoring_db"} <= set(conns)
    services = _services()
    for conn_id, target_port in [("lakefs_default", 8000), ("mlflow_default", 5000)]:
        conn = conns[conn_id]
        assert conn["host"] in services and conn["port"] == target_port, conn_id
    assert conns["lakefs_default"]["login"] == (secrets_dir / "lakefs_access_key_id").read_text()
    assert conns["lakefs_default"]["password"] == (
        (secrets_dir / "lakefs_secret_access_key").read_text()
    )
    assert conns["monitoring_db"]["schema"] == "monitoring"
    assert conns["monitoring_db"]["conn_type"] == "postgres"
    assert conns["monitoring_db"]["host"] in services
    assert conns["monitoring_db"]["login"] == _env()["MONITORING_DB_USER"]


# Read when the export task builds the bento (bentos/service.py) and by the cluster policy
# (docker/airflow/config/airflow_local_settings.py): not library settings.
BUILD_SWITCHES = {"PAWPAW_SERVE_GPU", "PAWPAW_GPU_QUEUE"}


def test_pawpaw_settings_in_compose_are_real_settings():
    from pawpaw.config import Settings

    env = {
        k: _interpolate(v, _env())
        for k, v in _environment("airflow-scheduler").items()
        if k.startswith("PAWPAW_") and k not in BUILD_SWITCHES
    }
    assert _environment("airflow-scheduler")["PAWPAW_SERVE_GPU"] == "${PAWPAW_SERVE_GPU:-1}"
    fields = set(Settings.model_fields)
    for key in env:
        assert key.removeprefix("PAWPAW_").lower() in fields, f"{key} is no pawpaw setting"
        assert not _is_secret(key), f"{key}: credentials come from the Connections"
    settings = Settings(**{k.removeprefix("PAWPAW_").lower(): v for k, v in env.items()})
    assert settings.lakefs_storage_namespace == "s3://lakefs/pawpularity"
    assert settings.tracking_uri == "http://mlflow:5000"


def test_lakefs_is_configured_for_postgres_and_minio():
    env = _environment("lakefs")
    assert env["LAKEFS_DATABASE_TYPE"] == "postgres"
    expected = {
        "LAKEFS_BLOCKSTORE_TYPE": "s3",
        "LAKEFS_BLOCKSTORE_S3_ENDPOINT": "http://minio:9000",
        "LAKEFS_BLOCKSTORE_S3_FORCE_PATH_STYLE": "true",
        "LAKEFS_BLOCKSTORE_S3_DISCOVER_BUCKET_REGION": "false",
        "LAKEFS_BLOCKSTORE_S3_DISABLE_PRE_SIGNED": "true",
        "LAKEFS_BLOCKSTORE_S3_DISABLE_PRE_SIGNED_UI": "true",
    }
    assert {k: env.get(k) for k in expected} == expected
    entrypoint = _mounted_script("lakefs", "/scripts/lakefs-entrypoint.sh").read_text()
    for key in [
        "LAKEFS_DATABASE_POSTGRES_CONNECTION_STRING",
        "LAKEFS_AUTH_ENCRYPT_SECRET_KEY",
        "LAKEFS_BLOCKSTORE_SIGNING_SECRET_KEY",
        "LAKEFS_BLOCKSTORE_S3_CREDENTIALS_ACCESS_KEY_ID",
        "LAKEFS_BLOCKSTORE_S3_CREDENTIALS_SECRET_ACCESS_KEY",
    ]:
        assert re.search(rf"^{key}=", entrypoint, re.M), f"the entrypoint does not set {key}"
        assert key not in env, f"{key} must come from the secrets volume"
    assert '"$lakefs" setup --user-name' in entrypoint and 'exec "$lakefs" run' in entrypoint
    assert " ".join(_services()["lakefs"]["healthcheck"]["test"]).endswith("/api/v1/healthcheck")


def test_buckets_and_databases_exist_before_use(secrets_dir: Path):
    buckets = set(_environment("minio-init")["MINIO_BUCKETS"].split())
    namespace = _interpolate(
        _environment("airflow-scheduler")["PAWPAW_LAKEFS_STORAGE_NAMESPACE"], _env()
    )
    mlflow_script = _mounted_script("mlflow", "/scripts/mlflow-server.sh").read_text()
    artifacts = re.search(r"MLFLOW_ARTIFACTS_DESTINATION:-([^}]+)\}", mlflow_script)[1]
    assert urlsplit(namespace).netloc in buckets
    assert urlsplit(artifacts).netloc in buckets
    for bucket in buckets:  # each client's MinIO user may use its own bucket, and only it
        policy = json.loads((DOCKER / "minio" / "policies" / f"pawpaw-{bucket}.json").read_text())
        resources = {r for st in policy["Statement"] for r in st["Resource"]}
        assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}, bucket

    init = (DOCKER / "postgres" / "init-databases.sh").read_text()
    created = set(re.findall(r'^_pawpaw_database "\$\{\w+_DB_NAME:-(\w+)\}"', init, re.M))
    used = {urlsplit((secrets_dir / "airflow_sql_alchemy_conn").read_text()).path.strip("/")}
    used.add(
        json.loads((secrets_dir / "airflow_connections.json").read_text())["monitoring_db"][
            "schema"
        ]
    )
    for service, script in [("lakefs", "/scripts/lakefs-entrypoint.sh"),
                            ("mlflow", "/scripts/mlflow-server.sh")]:  # fmt: skip
        text = _mounted_script(service, script).read_text()
        used |= set(re.findall(r"\$\{\w+_DB_NAME:-(\w+)\}", text))
    used.add(_environment("grafana")["MONITORING_DB_NAME"])
    assert used == created == {"airflow", "mlflow", "lakefs", "monitoring"}


def test_gpu_service_reserves_an_nvidia_device():
    devices = _services()["bento"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        d["driver"] == "nvidia" and "gpu" in d["capabilities"] and d.get("count") in (1, "all")
        for d in devices
    )
    assert "deploy" not in _services()["bento-cpu"]
    # Two images: the CPU service must not run the GPU build (onnxruntime-gpu, gpu: 1).
    images = {}
    for name, variant in (("bento", "gpu"), ("bento-cpu", "cpu")):
        svc = _services()[name]
        images[name] = _interpolate(svc["image"], _env())
        assert images[name] == f"pawpularity-service:{variant}"
        assert svc["pull_policy"] == "never"
        assert any(p.endswith(":3000") for p in svc["ports"])
        assert "/readyz" in " ".join(svc["healthcheck"]["test"])
    containerize = (DOCKER / "bento" / "containerize.sh").read_text()
    assert '-t "$image:$variant"' in containerize and "pawpularity-service" in containerize


# --- Grafana ------------------------------------------------------------------------------


def _grafana_mount(target: str) -> Path:
    for kind, source, tgt in _volumes("grafana"):
        if tgt == target and kind == "bind":
            return (ROOT / source).resolve()
    raise AssertionError(f"grafana mounts nothing at {target}")


def test_grafana_datasource_provisioning():
    assert _grafana_mount("/etc/grafana/provisioning") == DATASOURCES.parents[1]
    config = yaml.safe_load(DATASOURCES.read_text())
    (ds,) = config["datasources"]
    assert ds["uid"] == DATASOURCE_UID
    assert ds["type"] in {"grafana-postgresql-datasource", "postgres"}
    assert ds["url"].split(":")[0] in _services()
    assert ds["secureJsonData"]["password"].startswith("${")
    grafana_env = set(_environment("grafana"))
    # The entrypoint exports the generated passwords (read from the secrets volume).
    entrypoint = _mounted_script("grafana", "/scripts/grafana-entrypoint.sh").read_text()
    grafana_env |= set(re.findall(r"^export (.+)$", entrypoint, re.M)[0].split())
    for name in _VAR.findall(DATASOURCES.read_text()):
        assert name[0] in grafana_env, f"{name[0]} is not in grafana's environment"
    assert "GRAFANA_DB_PASSWORD" in grafana_env - set(_environment("grafana"))


def test_grafana_dashboard_provider_points_at_the_mounted_dashboards():
    (provider,) = yaml.safe_load(DASHBOARD_PROVIDER.read_text())["providers"]
    path = provider["options"]["path"]
    assert _grafana_mount(path) == DASHBOARD.parent
    home = _environment("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{path}/{DASHBOARD.name}"


@cache
def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


@cache
def _alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in sorted(ALERTING.glob("*.yaml")):
        rules += [r for g in yaml.safe_load(path.read_text()).get("groups", []) for r in g["rules"]]
    return rules


def _grafana_sql() -> list[tuple[str, str]]:
    """(where, rawSql) of every query Grafana sends to the monitoring database."""
    sql = [
        (panel["title"], target["rawSql"])
        for panel in _dashboard()["panels"]
        for target in panel.get("targets", [])
    ]
    sql += [(f"${v['name']}", v["query"]) for v in _dashboard()["templating"]["list"]]
    sql += [
        (f"annotation {a['name']}", a["target"]["rawSql"])
        for a in _dashboard()["annotations"]["list"]
        if a["datasource"]["uid"] == DATASOURCE_UID
    ]
    sql += [
        (f"rule {r['uid']}", q["model"]["rawSql"])
        for r in _alert_rules()
        for q in r["data"]
        if q["datasourceUid"] == DATASOURCE_UID
    ]
    return sql


def test_dashboard_is_well_formed():
    dash = _dashboard()
    assert dash["uid"] == "pawpaw-drift"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 7
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID
            assert target["rawQuery"] and target["rawSql"].strip()
            assert target["format"] in {"table", "time_series"}
            if target["format"] == "time_series":
                assert re.search(r'\bAS "time"', target["rawSql"]), panel["title"]
            # The time axis is the analysed month; every panel follows the version picker.
            assert re.search(r"\$__timeFilter\((\w+\.)?month\)", target["rawSql"]), panel["title"]
            assert "IN ($model_version)" in target["rawSql"], panel["title"]
    for var in dash["templating"]["list"]:
        assert var["datasource"]["uid"] == DATASOURCE_UID
        assert var["type"] == "query" and var["multi"] and var["includeAll"], var["name"]
    assert dash["templating"]["list"][0]["name"] == "model_version"
    for note in dash["annotations"]["list"]:
        if not note.get("builtIn"):
            assert note["datasource"]["uid"] == DATASOURCE_UID and note["enable"]


def test_dashboard_shows_what_the_brief_asks_for():
    by_type: dict[str, list[str]] = {}
    for panel in _dashboard()["panels"]:
        by_type.setdefault(panel["type"], []).append(
            " ".join(t["rawSql"] for t in panel["targets"])
        )
    # The month verdict: the latest month's alert and reasons.
    assert any("r.alert" in s and "r.reasons" in s and "LIMIT 1" in s for s in by_type["stat"])
    assert any("r.alert" in s for s in by_type["state-timeline"])  # the verdict per month
    series = by_type["timeseries"]
    realized_vs_estimated = ("rmse_analysis", "estimated_rmse", "rmse_limit")
    assert any(all(c in s for c in realized_vs_estimated) for s in series)
    assert any("estimate_error" in s for s in series)
    assert any("drift_metrics" in s and "upper_threshold" in s for s in series)  # chunks
    tests_columns = ("t.method", "t.column_name", "t.statistic", "t.p_value", "t.alpha", "t.alert")
    assert any(all(c in s for c in tests_columns) for s in by_type["table"])
    assert any("FROM drift_runs" in s and "r.reasons" in s for s in by_type["table"])  # runs
    # Promotions: the first month each model version appears.
    (promotions,) = [s for w, s in _grafana_sql() if w.startswith("annotation")]
    assert "min(r.month)" in promotions and "GROUP BY r.model_version" in promotions


def _sql_problems(sql: str) -> list[str]:
    """Names in `sql` that are not drift tables, their columns, aliases or plain SQL."""
    problems: list[str] = []
    s = re.sub(r"\$__\w+\(([^)]*)\)", r" \1 ", sql)  # Grafana macros: keep the argument
    s = re.sub(r"\$\{?\w+\}?", " NULL ", s)  # template variables
    for literal in re.findall(r"'([^']*)'", s):
        if re.fullmatch(r"[a-z_]+", literal) and literal not in DRIFT_VALUES:
            problems.append(f"unknown value {literal!r}")
    s = re.sub(r"'[^']*'", " ", s)
    ctes = {c.lower() for c in re.findall(r"(?:\bwith|,)\s*(\w+)\s+as\s*\(", s, re.I)}
    tables = {t.lower() for t in re.findall(r"\b(?:from|join)\s+(\w+)", s, re.I)}
    problems += [f"unknown table {t!r}" for t in tables - ctes - set(DRIFT_TABLES)]
    used = tables & set(DRIFT_TABLES)
    if not used:
        problems.append("no drift table queried")
    columns = set().union(*(DRIFT_TABLES[t] for t in used)) if used else set()
    aliases = {a.lower() for a in re.findall(r'\bas\s+"([^"]+)"', s, re.I)}
    aliases |= {a.lower() for a in re.findall(r"\bas\s+(\w+)\b(?!\s*\()", s, re.I)}
    s = re.sub(r'\bas\s+("[^"]+"|\w+)', " ", s, flags=re.I)  # alias definitions
    for quoted in re.findall(r'"([^"]+)"', s):
        if quoted.lower() not in columns | aliases:
            problems.append(f"unknown quoted name {quoted!r}")
    s = re.sub(r'"[^"]+"', " ", s)
    for qualifier, name in re.findall(r"\b(\w+)\.(\w+)\b", s):
        if qualifier.lower() not in aliases | set(DRIFT_TABLES):
            problems.append(f"unknown qualifier {qualifier!r}")
        if name.lower() not in columns:
            problems.append(f"unknown column {qualifier}.{name}")
    s = re.sub(r"\b\w+\.(\w+)\b", " ", s)
    known = _SQL_WORDS | columns | set(DRIFT_TABLES) | ctes | aliases
    for word in re.findall(r"\b[A-Za-z_]\w*\b", s):
        if word.lower() not in known:
            problems.append(f"unknown name {word!r}")
    return problems


def test_sql_checker_catches_mistakes():
    assert not _sql_problems("SELECT value FROM drift_metrics WHERE metric = 'rmse'")
    assert _sql_problems("SELECT valu FROM drift_metrics")
    assert _sql_problems("SELECT n_alerts FROM drift_metrics")  # a drift_runs column
    assert _sql_problems("SELECT value FROM model")  # NannyML's own tables are not ours
    assert _sql_problems("SELECT value FROM drift_metrics WHERE metric = 'psi'")
    assert _sql_problems("SELECT m.valu FROM drift_metrics AS m")


@pytest.mark.parametrize(("title", "sql"), _grafana_sql(), ids=[t for t, _ in _grafana_sql()])
def test_grafana_sql_references_only_the_drift_tables(title: str, sql: str):
    assert not _sql_problems(sql), f"{title}: {_sql_problems(sql)}"
