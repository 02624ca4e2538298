"""What the stack runs: one :class:`ServiceSpec` per service, in start order, and the
environment every Airflow component shares."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from pawpaw.config import PROJECT_ROOT, Settings
from pawpaw.progress import say
from pawpaw.stack.processes import StackError, answers, json_at, tool

__all__ = [
    "SERVICES",
    "ServiceSpec",
    "airflow_env",
    "champion_bento",
    "monitoring_url",
    "service_specs",
]

TAG = "stack"  # progress lines' tag


SERVICES: tuple[str, ...] = (
    "lakefs",
    "mlflow",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "bento",
)


_AIRFLOW_COMPONENTS = {  # service -> its key in the API server's /api/v2/monitor/health
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag_processor",
    "airflow-triggerer": "triggerer",
}


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service and how to tell it is healthy."""

    name: str
    cmd: list[str]
    url: str  # what a person opens
    health: str  # a URL that answers below 500 when the service is healthy...
    health_key: str | None = None  # ...or, with a key, whose JSON says {key: {"status": "healthy"}}
    port: int | None = None  # the port it listens on (checked free before start)
    # What its processes' command lines show (they may rename themselves): by default the
    # program started; a pid or process group without one of these is not the service's.
    also_runs_as: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 180.0

    @property
    def programs(self) -> tuple[str, ...]:
        return (Path(self.cmd[0]).name, *self.also_runs_as)


def _is_local(url: str) -> bool:
    return urlparse(url).hostname in {"127.0.0.1", "localhost", "::1"}


def monitoring_url(settings: Settings) -> str:
    """The drift store: as configured; else the local PostgreSQL that `scripts/postgres.sh`
    creates, when it answers; else SQLite under data_dir."""
    if settings.monitoring_db_url:
        return settings.monitoring_db_url
    import sqlalchemy as sa

    local = "postgresql+psycopg2://pawpaw:pawpaw@127.0.0.1:5432/pawpaw_monitoring"
    engine = sa.create_engine(local, connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            return local
    except Exception:
        return settings.drift_db_url
    finally:
        engine.dispose()


def _jwt_secret(settings: Settings) -> str:
    """One secret shared by every Airflow component (tokens of the execution API), made at the
    first `up` and kept beside the metadata DB (never in the repository)."""
    path = settings.data_dir / "airflow" / "jwt_secret"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def airflow_env(settings: Settings, pawpaw_env: dict[str, str]) -> dict[str, str]:
    """Environment of every Airflow component (what `airflow standalone` would set up)."""
    api = f"http://127.0.0.1:{settings.airflow_port}"
    return {
        "AIRFLOW_HOME": str(settings.data_dir / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # LocalExecutor starts this many worker processes: 2 cores want few.
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(settings.airflow_port),
        "AIRFLOW__API__BASE_URL": api,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": _jwt_secret(settings),
        # A task whose worker died (e.g. with a killed scheduler) is retried within a minute.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        # Components spawn `airflow ...` subprocesses: the environment's bin/ comes first.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        **pawpaw_env,
    }


def service_specs(
    settings: Settings, pawpaw_env: dict[str, str], bento_tag: str | None
) -> list[ServiceSpec]:
    """The services to run, in start order (the bento only with a ``bento_tag``)."""
    specs: list[ServiceSpec] = []
    lakefs = settings.lakefs_endpoint.rstrip("/")
    if _is_local(lakefs):
        port = urlparse(lakefs).port or 8000
        specs.append(
            ServiceSpec(
                "lakefs",
                [
                    tool("pawpaw"),
                    "lakefs-emulator",
                    "--port",
                    str(port),
                    "--data",
                    str(settings.data_dir / "lakefs"),
                ],
                url=lakefs,
                health=f"{lakefs}/api/v1/healthcheck",
                port=port,
            )
        )
    mlflow = f"http://127.0.0.1:{settings.mlflow_port}"
    artifacts = (settings.data_dir / "mlartifacts").resolve()
    specs.append(
        ServiceSpec(
            "mlflow",
            [
                tool("mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(settings.mlflow_port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{settings.data_dir / 'mlflow.db'}",
                "--default-artifact-root",
                artifacts.as_uri(),
                "--no-serve-artifacts",
            ],
            url=mlflow,
            health=f"{mlflow}/health",
            port=settings.mlflow_port,
        )
    )
    api = f"http://127.0.0.1:{settings.airflow_port}"
    env = airflow_env(settings, pawpaw_env)
    specs.append(
        ServiceSpec(
            "airflow-api-server",
            [tool("airflow"), "api-server"],
            url=api,
            health=f"{api}/api/v2/monitor/health",
            port=settings.airflow_port,
            env=env,
        )
    )
    for name, key in _AIRFLOW_COMPONENTS.items():
        specs.append(
            ServiceSpec(
                name,
                [tool("airflow"), name.removeprefix("airflow-")],
                url=f"{api}/api/v2/monitor/health ({key})",
                health=f"{api}/api/v2/monitor/health",
                health_key=key,
                env=env,
            )
        )
    if bento_tag is not None:
        bento = f"http://127.0.0.1:{settings.serve_port}"
        specs.append(
            ServiceSpec(
                "bento",
                [
                    tool("bentoml"),
                    "serve",
                    bento_tag,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(settings.serve_port),
                ],
                url=bento,
                health=f"{bento}/readyz",
                also_runs_as=("circusd",),  # `bentoml serve` renames itself
                port=settings.serve_port,
                # The service follows the champion alias on the stack's MLflow (hot swap).
                env={
                    **_bento_env(settings),
                    "PAWPAW_MLFLOW_TRACKING_URI": pawpaw_env["PAWPAW_MLFLOW_TRACKING_URI"],
                },
            )
        )
    return specs


def is_healthy(health: str, health_key: str | None = None) -> bool:
    """Whether a service answers its health check (see :class:`ServiceSpec`)."""
    if health_key is None:
        return answers(health)
    found = json_at(health) or {}
    return (found.get(health_key) or {}).get("status") == "healthy"


def _bento_env(settings: Settings) -> dict[str, str]:
    from pawpaw.export import bento_env

    return bento_env(settings)


def champion_bento(settings: Settings, progress: bool) -> str | None:
    """The bento of the champion (exported now if the DAG has not yet), or None without one."""
    from mlflow.exceptions import MlflowException

    from pawpaw.export import ExportError, export_champion
    from pawpaw.registry import CHAMPION, alias_version

    try:
        if alias_version(settings, CHAMPION) is None:
            say(progress, "bento: no champion yet (`pawpaw up` starts it once one exists)", tag=TAG)
            return None
        return export_champion(settings, progress=False).bento_tag
    except (ExportError, MlflowException) as exc:
        raise StackError(f"bento: the champion cannot be exported: {exc}") from exc
