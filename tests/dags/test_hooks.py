"""The hooks turn Airflow Connections (here from AIRFLOW_CONN_* env, as in compose) into the
library's settings; without a connection they fall back to the PAWPAW_* settings."""

from __future__ import annotations

import json

import pytest

from pawpaw.config import get_settings

pytestmark = pytest.mark.dags


@pytest.fixture(autouse=True)
def _no_connections(monkeypatch, tmp_path):
    for conn_id in ("LAKEFS_DEFAULT", "MLFLOW_DEFAULT", "MONITORING_DB"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id}", raising=False)
    monkeypatch.setenv("PAWPAW_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _conn(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_connections_become_settings(monkeypatch) -> None:
    from pawpaw_airflow import pipeline_settings

    _conn(monkeypatch, "lakefs_default", conn_type="lakefs", host="lakefs", port=8000,
          login="AKIATEST", password="s3cr/et", extra={"repository": "shelter"})  # fmt: skip
    _conn(monkeypatch, "mlflow_default", conn_type="mlflow", host="https://mlflow.example.org")
    _conn(monkeypatch, "monitoring_db", conn_type="postgres", host="db", port=5432,
          login="monitor", password="p@ss", schema="monitoring")  # fmt: skip
    s = pipeline_settings()
    assert s.lakefs_endpoint == "http://lakefs:8000"
    assert s.lakefs_access_key_id == "AKIATEST"
    assert s.lakefs_secret_access_key.get_secret_value() == "s3cr/et"
    assert s.lakefs_repo == "shelter"
    assert s.tracking_uri == "https://mlflow.example.org"
    assert s.drift_db_url == "postgresql+psycopg2://monitor:p%40ss@db:5432/monitoring"


def test_without_connections_the_settings_apply(monkeypatch) -> None:
    from pawpaw_airflow import LakeFSHook, pipeline_settings

    monkeypatch.setenv("PAWPAW_LAKEFS_ENDPOINT", "http://127.0.0.1:9999")
    s = pipeline_settings()
    assert s.lakefs_endpoint == "http://127.0.0.1:9999"
    assert s.tracking_uri.startswith("sqlite:///")
    assert LakeFSHook().settings_overrides() == {}


def test_hooks_build_clients(monkeypatch) -> None:
    from pawpaw_airflow import LakeFSHook, MLflowHook, MonitoringDBHook

    _conn(monkeypatch, "lakefs_default", conn_type="lakefs", host="127.0.0.1", port=8123,
          login="k", password="s")  # fmt: skip
    _conn(monkeypatch, "mlflow_default", conn_type="mlflow", host="127.0.0.1", port=5123)
    client = LakeFSHook().get_conn()
    assert client.config.host.startswith("http://127.0.0.1:8123")
    assert MLflowHook().get_conn().tracking_uri == "http://127.0.0.1:5123"
    assert str(MonitoringDBHook().get_conn().url).startswith("sqlite:///")


def test_hooks_build_their_client_once(monkeypatch) -> None:
    """As the Amazon provider's hooks do: `conn` is built on first use, then reused."""
    from pawpaw_airflow import LakeFSHook, MLflowHook, MonitoringDBHook

    _conn(monkeypatch, "mlflow_default", conn_type="mlflow", host="127.0.0.1", port=5123)
    for hook in (LakeFSHook(), MLflowHook(), MonitoringDBHook()):
        assert hook.get_conn() is hook.get_conn() is hook.conn, type(hook).__name__
    assert LakeFSHook().get_conn() is not LakeFSHook().get_conn()  # one client per hook
