"""The README's quick start (`pawpaw demo`) on small pools: every service started for real,
the DAG run twice through `airflow dags test`, the champion served and answering a photo."""

from __future__ import annotations

import pytest

from tests.fixtures.common import free_port

pytestmark = pytest.mark.e2e


def test_demo_runs_two_months_and_serves_a_score(tmp_path, tmp_path_factory, monkeypatch) -> None:
    import sqlalchemy as sa
    from mlflow import MlflowClient

    from pawpaw.config import get_settings
    from pawpaw.demo import DemoOptions, run_demo

    data = tmp_path / "data"
    monkeypatch.setenv("PAWPAW_DATA_DIR", str(data))
    monkeypatch.setenv("PAWPAW_LAKEFS_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("PAWPAW_MONITORING_DB_URL", f"sqlite:///{data / 'monitoring.db'}")
    # BentoML fixes its store once per process: share the session's with the other tests.
    monkeypatch.setenv("PAWPAW_BENTOML_HOME", str(tmp_path_factory.getbasetemp() / "bentoml-home"))
    monkeypatch.setenv("PAWPAW_REGISTERED_MODEL", "pawpularity-demo")
    monkeypatch.delenv("PAWPAW_MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    opts = DemoOptions(
        pool_size=300, sample_size=160, keep_running=False, airflow_ui=False,
        serve_port=free_port(), mlflow_port=free_port(),
    )  # fmt: skip
    result = run_demo(get_settings(), opts)
    get_settings.cache_clear()

    assert set(result.timings) == {"synth", "month1", "month2"}
    assert result.score is not None and 1.0 <= result.score <= 100.0
    # The two months left their traces: a champion in the registry (the SQLite store the
    # demo's MLflow server used) and one drift run comparing month 2 with month 1.
    client = MlflowClient(f"sqlite:///{data / 'mlflow.db'}")
    assert str(client.get_model_version_by_alias("pawpularity-demo", "champion").version) in {
        "1",
        "2",
    }
    engine = sa.create_engine(f"sqlite:///{data / 'monitoring.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM drift_runs")).scalar() == 1
    engine.dispose()
