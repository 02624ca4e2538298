"""Airflow as it is operated: `pawpaw up` starts the stack (lakeFS emulator, MLflow, Airflow's
API server, scheduler, DAG processor and triggerer), months are triggered through the REST API
as the UI's Trigger button does, the scheduler runs them, a killed scheduler recovers, the UI
shows the runs in a real browser, and `pawpaw down` leaves nothing behind.

One stack per module, on free ports, with its own data dir and a schema of the test PostgreSQL
as drift store. Tests run in file order: each month builds on the one before.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.fixtures.common import assert_nothing_listens, free_port, live_in_groups, wait_until
from tests.fixtures.postgres import fresh_schema

pytestmark = pytest.mark.e2e

DAG_ID = "pawpularity_monthly"
SKIPPED, SUCCESS = "skipped", "success"
STACK_PORTS = ("PAWPAW_MLFLOW_PORT", "PAWPAW_AIRFLOW_PORT", "PAWPAW_SERVE_PORT")


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory, postgres_url, synthetic_pool, shifted_pool):
    """Settings of a stack of our own, as an operator would set them (PAWPAW_* variables)."""
    from pawpaw.config import get_settings

    mp = pytest.MonkeyPatch()
    tag = uuid.uuid4().hex[:8]
    root = tmp_path_factory.mktemp("stack")
    with fresh_schema(postgres_url, "stack") as monitoring:
        for name in STACK_PORTS:
            mp.setenv(name, str(free_port()))
        mp.setenv("PAWPAW_LAKEFS_ENDPOINT", f"http://127.0.0.1:{free_port()}")
        mp.setenv("PAWPAW_DATA_DIR", str(root / "data"))
        mp.setenv("PAWPAW_MONITORING_DB_URL", monitoring)
        mp.setenv("PAWPAW_REGISTERED_MODEL", f"pawpularity-stack-{tag}")
        # BentoML fixes its store once per process: share the session's with the other tests.
        bento_home = tmp_path_factory.getbasetemp() / "bentoml-home"
        mp.setenv("BENTOML_HOME", str(bento_home))
        mp.setenv("PAWPAW_BENTOML_HOME", str(bento_home))
        get_settings.cache_clear()
        engine = sa.create_engine(monitoring)
        yield {
            "settings": get_settings(),
            "engine": engine,
            "pools": {"base": synthetic_pool, "shifted": shifted_pool},
        }
        mp.undo()
        get_settings.cache_clear()
        engine.dispose()


@pytest.fixture(scope="module")
def stack(stack_env):
    """The running stack (`pawpaw up`); stopped at the end even when a test failed."""
    from pawpaw import stack as local_stack
    from pawpaw.stack.runs import AirflowAPI

    settings = stack_env["settings"]
    try:
        local_stack.up(settings, bento=False)
        api = AirflowAPI(f"http://127.0.0.1:{settings.airflow_port}")
        api.wait_for_dag(DAG_ID)
        yield {**stack_env, "api": api}
    finally:
        local_stack.down(settings)


def _month(i: int) -> datetime:
    """Month 1 is last month, month 2 this month: the newest tick of `@monthly`, the run the
    scheduler creates by itself once the DAG is unpaused; it finds ours and adds none."""
    from pawpaw.demo import last_two_months

    first = last_two_months(date.today())[i - 1]
    return datetime(first.year, first.month, 1, tzinfo=UTC)


def _run_id(month: int) -> str:
    return f"test__{_month(month):%Y-%m}"


def _trigger(stack, month: int, **conf) -> str:
    conf = {"pool": str(stack["pools"]["base"]), "sample_size": 160, **conf}
    # run_after orders the queue (max_active_runs=1): month 1 first.
    after = datetime.now(UTC) + timedelta(seconds=month)
    stack["api"].trigger(DAG_ID, run_id=_run_id(month), logical_date=_month(month), conf=conf,
                         run_after=after)  # fmt: skip
    return _run_id(month)


def _finish(stack, run_id: str) -> dict[str, str]:
    run = stack["api"].follow(DAG_ID, run_id, timeout=900)
    states = {t["task_id"]: t["state"] for t in stack["api"].task_instances(DAG_ID, run_id)}
    assert run["state"] == SUCCESS, states
    return states


def _side_effects(stack) -> dict:
    from mlflow import MlflowClient

    from pawpaw import versioning

    settings = stack["settings"]
    client = MlflowClient(f"http://127.0.0.1:{settings.mlflow_port}")
    versions = client.search_model_versions(f"name='{settings.registered_model}'")
    with stack["engine"].connect() as conn:
        rows = 0
        if sa.inspect(conn).has_table("drift_metrics"):
            rows = conn.execute(sa.text("SELECT count(*) FROM drift_metrics")).scalar()
    return {
        "commits": [c.id for c in versioning.list_commits(settings)],
        "versions": sorted(int(mv.version) for mv in versions),
        "drift_rows": rows,
    }


def test_up_twice_starts_nothing_new_and_status_is_healthy(stack, capsys) -> None:
    from typer.testing import CliRunner

    from pawpaw import stack as local_stack
    from pawpaw.cli import app

    settings = stack["settings"]
    before = {s.name: s.pid for s in local_stack.status(settings)}
    assert set(before) == {
        "lakefs", "mlflow", "airflow-api-server", "airflow-scheduler", "airflow-dag-processor",
        "airflow-triggerer",
    }  # fmt: skip
    local_stack.up(settings, bento=False)
    assert "already running" in capsys.readouterr().err
    assert {s.name: s.pid for s in local_stack.status(settings)} == before
    shown = CliRunner().invoke(app, ["status"])
    assert shown.exit_code == 0
    assert shown.output.count("healthy") == 6 and f":{settings.airflow_port}" in shown.output


def test_a_taken_port_is_refused_naming_the_port_and_its_owner(stack, tmp_path) -> None:
    from pawpaw import stack as local_stack

    settings = stack["settings"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = settings.model_copy(
            update={
                "data_dir": tmp_path / "other",
                "lakefs_endpoint": f"http://127.0.0.1:{free_port()}",
                "mlflow_port": port,
            }
        )
        try:
            with pytest.raises(local_stack.StackError, match=rf"mlflow: port {port} is taken by "
                               rf"pid {os.getpid()} \("):  # fmt: skip
                local_stack.up(other, bento=False)
        finally:
            local_stack.down(other)


def test_invalid_params_are_refused_when_triggered(stack) -> None:
    from pawpaw.stack.runs import RunError

    api = stack["api"]
    when = datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(RunError, match=r"400.*sample_size.*minimum of 120"):
        api.trigger(DAG_ID, run_id="bad-size", logical_date=when, conf={"sample_size": 5})
    with pytest.raises(RunError, match=r"400.*bias"):
        api.trigger(DAG_ID, run_id="bad-bias", logical_date=when, conf={"bias": {"Fur": 0.5}})
    with pytest.raises(RunError, match="404"):
        api.run(DAG_ID, "bad-size")  # nothing was created


def test_the_scheduler_runs_triggered_months(stack) -> None:
    """Both months are triggered, then the DAG is unpaused; the scheduler runs them in order.
    Month 1: no champion -> train, promote, export; no earlier month -> no drift."""
    run_id = _trigger(stack, 1)
    # Month 2: the shifted pool, retraining forced (the next test kills the scheduler in it).
    _trigger(stack, 2, pool=str(stack["pools"]["shifted"]), force_retrain=True)
    stack["api"].set_paused(DAG_ID, False)
    states = _finish(stack, run_id)
    assert {k: states[k] for k in ("train_challenger", "promote", "export", "no_reference")} == (
        dict.fromkeys(("train_challenger", "promote", "export", "no_reference"), SUCCESS)
    )
    assert (states["skip_training"], states["keep_champion"], states["drift"]) == (SKIPPED,) * 3
    run = stack["api"].run(DAG_ID, run_id)
    assert run["run_type"] == "manual" and run["start_date"] > run["logical_date"]
    # (Month 2 starts as soon as month 1 ends: its commits and versions are counted after it.)


def test_a_killed_scheduler_recovers_and_duplicates_nothing(stack) -> None:
    """Month 2 (shifted, retrain forced): SIGKILL the scheduler during train_challenger, start
    it again; the run completes, with one new commit, one new model version, one drift run."""
    from pawpaw import stack as local_stack

    settings, api = stack["settings"], stack["api"]
    run_id = _run_id(2)

    def training() -> bool:
        tis = {t["task_id"]: t["state"] for t in api.task_instances(DAG_ID, run_id)}
        assert tis.get("train_challenger") not in {"success", "failed"}, tis
        return tis.get("train_challenger") == "running"

    wait_until(training, timeout=300, what="train_challenger running")
    (scheduler,) = (s for s in local_stack.status(settings) if s.name == "airflow-scheduler")
    os.kill(scheduler.pid, signal.SIGKILL)
    wait_until(lambda: not _alive(scheduler.pid), timeout=30, what="the scheduler's death")
    local_stack.up(settings, bento=False)  # starts only what is missing: the scheduler
    (restarted,) = (s for s in local_stack.status(settings) if s.name == "airflow-scheduler")
    assert restarted.pid != scheduler.pid and restarted.healthy

    states = _finish(stack, run_id)
    assert (states["train_challenger"], states["drift"]) == (SUCCESS, SUCCESS)
    after = _side_effects(stack)
    assert (len(after["commits"]), after["versions"]) == (2, [1, 2])
    with stack["engine"].connect() as conn:
        runs = conn.execute(sa.text("SELECT count(*) FROM drift_runs")).scalar()
    assert runs == 1 and after["drift_rows"] > 0


def test_commands_use_the_running_stacks_stores(stack) -> None:
    from typer.testing import CliRunner

    from pawpaw.cli import app

    settings = stack["settings"]
    listed = CliRunner().invoke(app, ["models"])
    assert listed.exit_code == 0, listed.output
    assert f"@ http://127.0.0.1:{settings.mlflow_port}" in listed.output  # the stack's server
    assert "champion" in listed.output


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.browser
def test_the_airflow_ui_shows_the_scheduled_months(stack, browser) -> None:
    from selenium.webdriver.common.by import By

    from tests.fixtures.browser import save_screenshot

    base = stack["api"].base_url
    browser.get(f"{base}/dags/{DAG_ID}")
    wait_until(lambda: _grid_has_runs(browser, By), timeout=60, what="the Airflow grid")
    assert DAG_ID in browser.page_source
    save_screenshot(browser, "airflow-grid")
    runs = browser.execute_script(
        "return fetch(arguments[0]).then(r => r.json())",
        f"{base}/api/v2/dags/{DAG_ID}/dagRuns",
    )
    expected = sorted(f"test__{_month(i):%Y-%m}" for i in (1, 2))
    assert sorted(r["dag_run_id"] for r in runs["dag_runs"]) == expected  # none of its own
    assert {r["state"] for r in runs["dag_runs"]} == {SUCCESS}


def _grid_has_runs(browser, by) -> bool:
    bars = browser.find_elements(by.CSS_SELECTOR, "[data-testid='run-bar'], [id^='grid-']")
    return len(bars) >= 2


def test_down_leaves_no_process_and_frees_every_port(stack) -> None:
    from pawpaw import stack as local_stack

    settings = stack["settings"]
    state = json.loads((settings.data_dir / "stack.json").read_text())
    groups = [g for record in state["services"].values() for g in record["pgids"]]
    ports = [r["port"] for r in state["services"].values() if r.get("port")]
    assert len(ports) == 3  # lakeFS emulator, MLflow, Airflow API server
    local_stack.down(settings)
    time.sleep(0.5)
    assert live_in_groups(groups) == []
    for port in ports:
        assert_nothing_listens(port)
    assert local_stack.status(settings) == []

    # With the stack down, the same commands read the same stores directly: the registry from
    # MLflow's SQLite file, the model's artifacts as plain files (no server to resolve them).
    from typer.testing import CliRunner

    from pawpaw.cli import app
    from pawpaw.evaluation import load_model
    from pawpaw.registry import CHAMPION, alias_version

    listed = CliRunner().invoke(app, ["models"])
    assert listed.exit_code == 0, listed.output
    assert "@ sqlite:///" in listed.output and "champion" in listed.output
    version = alias_version(settings, CHAMPION)
    model = load_model(settings, version, settings.data_dir / "champion-after-down")
    photo = next(iter(sorted((stack["pools"]["base"] / "train").glob("*.jpg")))).read_bytes()
    import pandas as pd

    (score,) = model.predict(pd.DataFrame({"image": [photo]}))
    assert 1.0 <= score <= 100.0
