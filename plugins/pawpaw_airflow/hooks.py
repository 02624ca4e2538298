"""Hooks in the style of the Amazon provider's: declare the connection, build the client lazily.

Connections come from the Airflow metastore or from the environment, e.g.::

    AIRFLOW_CONN_LAKEFS_DEFAULT='{"conn_type": "lakefs", "host": "lakefs", "port": 8000,
                                  "login": "<access key id>", "password": "<secret>"}'
    AIRFLOW_CONN_MLFLOW_DEFAULT='{"conn_type": "mlflow", "host": "mlflow", "port": 5000}'
    AIRFLOW_CONN_MONITORING_DB='postgresql://user:pass@postgres:5432/monitoring'

A hook whose connection is not defined falls back to the ``PAWPAW_*`` settings (the embedded
profile needs no Airflow connection at all) and says so in the task log.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, Connection
from airflow.sdk.exceptions import AirflowNotFoundException

if TYPE_CHECKING:
    import lakefs
    import sqlalchemy
    from mlflow import MlflowClient

    from pawpaw.config import Settings

__all__ = ["LakeFSHook", "MLflowHook", "MonitoringDBHook"]


def _http_url(conn: Connection, default_port: int) -> str:
    """``host`` may carry its scheme (``https://lakefs.example``); otherwise http is assumed."""
    host = conn.host or "127.0.0.1"
    if "://" in host:
        return host.rstrip("/")
    scheme = conn.extra_dejson.get("scheme") or conn.schema or "http"
    return f"{scheme}://{host}:{conn.port or default_port}"


class _PawpawHook(BaseHook):
    """Looks the connection up once and builds its client once (``conn``, as the Amazon
    provider's hooks do); without a connection the ``PAWPAW_*`` settings apply."""

    conn_name_attr = "conn_id"
    default_conn_name = ""

    def __init__(self, conn_id: str | None = None) -> None:
        super().__init__()
        self.conn_id = conn_id or self.default_conn_name

    @cached_property
    def connection(self) -> Connection | None:
        try:
            return self.get_connection(self.conn_id)
        except AirflowNotFoundException:
            self.log.info("Connection %r is not defined; using PAWPAW_* settings.", self.conn_id)
            return None

    def settings_overrides(self) -> dict[str, Any]:
        """The ``pawpaw.config.Settings`` fields this connection decides ({} without one)."""
        return {} if self.connection is None else self._overrides(self.connection)

    @cached_property
    def settings(self) -> Settings:
        """The ``PAWPAW_*`` settings with this connection's fields applied."""
        from pawpaw.config import Settings

        # Constructor, not model_copy: connection values get validated (secrets wrapped).
        return Settings(**self.settings_overrides())

    def _overrides(self, conn: Connection) -> dict[str, Any]:
        raise NotImplementedError


class LakeFSHook(_PawpawHook):
    """lakeFS (or the project's lakeFS-API emulator) from an Airflow Connection."""

    default_conn_name = "lakefs_default"
    conn_type = "lakefs"
    hook_name = "lakeFS"

    def _overrides(self, conn: Connection) -> dict[str, Any]:
        overrides: dict[str, Any] = {"lakefs_endpoint": _http_url(conn, 8000)}
        if conn.login:
            overrides["lakefs_access_key_id"] = conn.login
        if conn.password:
            overrides["lakefs_secret_access_key"] = conn.password
        if repo := conn.extra_dejson.get("repository"):
            overrides["lakefs_repo"] = repo
        return overrides

    @cached_property
    def conn(self) -> lakefs.Client:
        from pawpaw.versioning import make_client

        return make_client(self.settings)

    def get_conn(self) -> lakefs.Client:
        return self.conn


class MLflowHook(_PawpawHook):
    """An MLflow tracking server (tracking + registry) from an Airflow Connection."""

    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def _overrides(self, conn: Connection) -> dict[str, Any]:
        return {"mlflow_tracking_uri": _http_url(conn, 5000)}

    @cached_property
    def conn(self) -> MlflowClient:
        from pawpaw.tracking import mlflow_client

        return mlflow_client(self.settings)

    def get_conn(self) -> MlflowClient:
        return self.conn


class MonitoringDBHook(_PawpawHook):
    """The drift store (PostgreSQL in production) as an SQLAlchemy engine."""

    default_conn_name = "monitoring_db"
    conn_type = "postgres"
    hook_name = "Pawpularity monitoring DB"

    def _overrides(self, conn: Connection) -> dict[str, Any]:
        # Connection.get_uri() speaks "postgres://"; SQLAlchemy wants a driver name.
        uri = conn.get_uri().split("://", 1)[1]
        return {"monitoring_db_url": f"postgresql+psycopg2://{uri}"}

    @cached_property
    def conn(self) -> sqlalchemy.Engine:
        import sqlalchemy as sa

        return sa.create_engine(self.settings.drift_db_url)

    def get_conn(self) -> sqlalchemy.Engine:
        return self.conn
