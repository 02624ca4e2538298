"""The README's quick start (`pawpaw demo`) on small pools: the local stack started for real,
two months triggered through Airflow's REST API and run by its scheduler, the champion served
and answering a photo; then the stack is stopped and nothing of it remains."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.common import assert_nothing_listens, free_port, live_in_groups

pytestmark = pytest.mark.e2e

SUCCESS, SKIPPED = "success", "skipped"


def test_demo_runs_two_scheduled_months_and_serves_a_score(
    tmp_path, tmp_path_factory, monkeypatch
) -> None:
    import sqlalchemy as sa
    from mlflow import MlflowClient

    from pawpaw import stack
    from pawpaw.config import get_settings
    from pawpaw.demo import DemoOptions, run_demo

    data = tmp_path / "data"
    monkeypatch.setenv("PAWPAW_DATA_DIR", str(data))
    monkeypatch.setenv("PAWPAW_LAKEFS_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    for name in ("PAWPAW_MLFLOW_PORT", "PAWPAW_AIRFLOW_PORT", "PAWPAW_SERVE_PORT"):
        monkeypatch.setenv(name, str(free_port()))
    monkeypatch.setenv("PAWPAW_MONITORING_DB_URL", f"sqlite:///{data / 'monitoring.db'}")
    # BentoML fixes its store once per process: share the session's with the other tests.
    monkeypatch.setenv("PAWPAW_BENTOML_HOME", str(tmp_path_factory.getbasetemp() / "bentoml-home"))
    monkeypatch.setenv("PAWPAW_REGISTERED_MODEL", "pawpularity-demo")
    monkeypatch.delenv("PAWPAW_MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    opts = DemoOptions(sample_size=160, pool_size=300, keep_running=True)
    try:
        result = run_demo(settings, opts)
        state = json.loads((data / "stack.json").read_text())
        assert set(state["services"]) == set(stack.SERVICES)  # the bento too
        assert all(s.healthy for s in stack.status(settings))
    finally:
        stack.down(settings)
    get_settings.cache_clear()

    assert set(result.timings) == {"synth", "stack", "month1", "month2"}
    assert result.score is not None and 1.0 <= result.score <= 100.0
    # Both months ran through the scheduler, task by task: month 1 had no champion and no
    # earlier month; month 2 had both.
    month1, month2 = result.runs.values()
    assert (month1["train_challenger"], month1["promote"], month1["export"]) == (SUCCESS,) * 3
    assert (month1["drift"], month1["no_reference"]) == (SKIPPED, SUCCESS)
    assert (month2["drift"], month2["no_reference"]) == (SUCCESS, SKIPPED)
    # Their traces: a champion in the registry (the SQLite store the stack's MLflow server
    # used: readable with the stack down) and one drift run comparing month 2 with month 1.
    client = MlflowClient(f"sqlite:///{data / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("pawpularity-demo", "champion")
    assert str(champion.version) in {"1", "2"}
    engine = sa.create_engine(f"sqlite:///{data / 'monitoring.db'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM drift_runs")).scalar() == 1
    engine.dispose()
    # `down` left nothing: no process of any service group, every port free.
    groups = {g for record in state["services"].values() for g in record["pgids"]}
    assert live_in_groups(groups) == []
    for record in state["services"].values():  # the bento's workers hold its port, too
        if record.get("port"):
            assert_nothing_listens(record["port"])
