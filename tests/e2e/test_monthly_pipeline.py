"""The whole monthly pipeline through Airflow's dag.test(), against real services.

Real PostgreSQL (drift rows), a real MLflow server (tracking + registry), the lakeFS-API
emulator (or a real lakeFS), a BentoML store in a temp dir, tiny synthetic pools.
Runs in order: month 1 (no champion), month 2 (champion good enough), month 3 (a month of
stars the old champion cannot score: retrain, promote, export), then month 2 again (a rerun
must change nothing).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from pawpaw.config import Settings
from tests.fixtures.postgres import fresh_schema

pytestmark = pytest.mark.e2e

SKIPPED, SUCCESS = "skipped", "success"
# The default retrain threshold, as the trigger form offers it.
THRESHOLD = Settings.model_fields["retrain_threshold_ratio"].default
SIGNALS = list(Settings.model_fields["retrain_on"].default)
DECIDE_DEFAULTS = {"threshold_ratio": THRESHOLD, "force_retrain": False, "bias": {},
                   "retrain_on": SIGNALS}  # fmt: skip


def _month(m: int) -> datetime:
    return datetime(2026, m, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pipeline_env(
    tmp_path_factory, airflow_db, lakefs_server, mlflow_server, postgres_url, synthetic_pool
):
    """Connections and settings for the DAG's tasks, as an operator would set them."""
    mp = pytest.MonkeyPatch()
    tag = uuid.uuid4().hex[:8]
    root = tmp_path_factory.mktemp("e2e")
    endpoint = lakefs_server.endpoint.split("://", 1)[1]
    host, port = endpoint.rsplit(":", 1)
    mp.setenv(
        "AIRFLOW_CONN_LAKEFS_DEFAULT",
        json.dumps({
            "conn_type": "lakefs", "host": host, "port": int(port),
            "login": lakefs_server.access_key_id, "password": lakefs_server.secret_access_key,
            "extra": {"repository": f"e2e-{tag}"},
        }),
    )  # fmt: skip
    ml_host, ml_port = mlflow_server.split("://", 1)[1].rsplit(":", 1)
    mp.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "mlflow", "host": ml_host, "port": int(ml_port)}),
    )
    with fresh_schema(postgres_url, "e2e") as monitoring:
        mp.setenv("PAWPAW_MONITORING_DB_URL", monitoring)
        mp.setenv("PAWPAW_DATA_DIR", str(root / "data"))
        mp.setenv("PAWPAW_LAKEFS_STORAGE_NAMESPACE", f"local://e2e-{tag}")
        mp.setenv("PAWPAW_REGISTERED_MODEL", f"pawpularity-e2e-{tag}")
        mp.setenv("PAWPAW_MLFLOW_EXPERIMENT", f"e2e-{tag}")
        # BentoML fixes its store once per process: share the session's with the other tests.
        bento_home = tmp_path_factory.getbasetemp() / "bentoml-home"
        mp.setenv("BENTOML_HOME", str(bento_home))
        mp.setenv("PAWPAW_BENTOML_HOME", str(bento_home))
        from pawpaw.config import get_settings

        get_settings.cache_clear()
        engine = sa.create_engine(monitoring)
        yield {"engine": engine, "pool": synthetic_pool}
        mp.undo()
        get_settings.cache_clear()
        engine.dispose()


@pytest.fixture(scope="module")
def run_month(pipeline_env, dagbag):
    dag = dagbag.dags["pawpularity_monthly"]

    def run(month: int, **conf) -> dict[str, str]:
        # Every decision parameter explicitly: in one process dag.test() lets a run's conf
        # leak into the next run's params (Airflow updates the shared Param objects).
        conf = {"pool": str(pipeline_env["pool"]), "sample_size": 160, **DECIDE_DEFAULTS, **conf}
        dr = dag.test(logical_date=_month(month), run_conf=conf)
        # Running tasks in this process, Airflow exported AIRFLOW_CTX_* into os.environ and
        # left it there: later tests would believe they run inside a task.
        for name in [n for n in os.environ if n.startswith("AIRFLOW_CTX_")]:
            del os.environ[name]
        from airflow.utils.session import create_session

        with create_session() as session:
            tis = dr.get_task_instances(session=session)
            states = {ti.task_id: str(ti.state) for ti in tis}
        assert str(dr.state) == SUCCESS, states
        return states

    return run


def _side_effects(env) -> dict:
    from mlflow import MlflowClient

    from pawpaw import versioning
    from pawpaw.config import get_settings
    from pawpaw_airflow import pipeline_settings

    get_settings.cache_clear()
    settings = pipeline_settings()
    client = MlflowClient(settings.tracking_uri)
    versions = client.search_model_versions(f"name='{settings.registered_model}'")
    aliases = {}
    for mv in versions:
        for alias in client.get_model_version(settings.registered_model, mv.version).aliases:
            aliases[alias] = mv.version
    with env["engine"].connect() as conn:
        has_table = sa.inspect(conn).has_table("drift_metrics")
        rows = (
            conn.execute(sa.text("SELECT count(*) FROM drift_metrics")).scalar() if has_table else 0
        )
        runs = (
            [tuple(r) for r in conn.execute(sa.text(
                "SELECT analysis_commit, reference_commit, model_version, month, alert, reasons "
                "FROM drift_runs ORDER BY month"))]
            if has_table else []
        )  # fmt: skip
    import bentoml

    ours = {"registered_model": settings.registered_model}
    return {
        "commits": [c.id for c in versioning.list_commits(settings)],
        "versions": sorted(int(mv.version) for mv in versions),
        "aliases": aliases,
        "drift_rows": rows,
        "drift_runs": runs,
        "bentos": sorted(
            str(b.tag) for b in bentoml.bentos.list() if ours.items() <= b.info.labels.items()
        ),
        "bento_models": sorted(
            str(m.tag) for m in bentoml.models.list() if ours.items() <= m.info.labels.items()
        ),
    }


def _exports(settings) -> dict:
    """Our bentos by the registered version they serve (each version is exported once)."""
    import bentoml

    ours = [
        b
        for b in bentoml.bentos.list()
        if b.info.labels.get("registered_model") == settings.registered_model
    ]
    by_version = {b.info.labels["version"]: b for b in ours}
    assert len(by_version) == len(ours), [str(b.tag) for b in ours]
    return by_version


def test_three_months_and_an_idempotent_rerun(
    run_month, pipeline_env, star_pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Month 1: no champion -> train, promote, export; no earlier month -> drift skipped.
    s1 = run_month(10)
    assert {
        k: s1[k] for k in ("train_challenger", "promote", "export", "no_reference")
    } == dict.fromkeys(("train_challenger", "promote", "export", "no_reference"), SUCCESS)
    assert {k: s1[k] for k in ("skip_training", "keep_champion", "drift")} == dict.fromkeys(
        ("skip_training", "keep_champion", "drift"), SKIPPED
    )
    fx1 = _side_effects(pipeline_env)
    assert fx1["versions"] == [1]
    assert fx1["aliases"]["champion"] == "1"
    assert fx1["drift_rows"] == 0
    assert len(fx1["bentos"]) == 1 and len(fx1["bento_models"]) == 1

    # Month 2: a lenient threshold keeps the champion; drift against month 1 (the champion's
    # training commit) is computed before the decision. Its verdict on 40 test rows is not what
    # this step is about: only the RMSE signals count here.
    s2 = run_month(11, threshold_ratio=2.0, retrain_on=["rmse", "estimated_rmse"])
    assert s2["skip_training"] == SUCCESS
    assert {s2[k] for k in ("train_challenger", "evaluate_challenger", "promote", "export")} == {
        SKIPPED
    }
    assert s2["drift"] == SUCCESS and s2["no_reference"] == SKIPPED
    fx2 = _side_effects(pipeline_env)
    assert len(fx2["commits"]) == len(fx1["commits"]) + 1  # one new sample commit
    assert fx2["versions"] == [1]
    assert fx2["drift_rows"] > 0
    commit1, commit2 = fx1["commits"][0], fx2["commits"][0]
    assert [r[:4] for r in fx2["drift_runs"]] == [(commit2, commit1, "1", datetime(2026, 11, 1))]

    # Rerun month 2 at once: same commit, no new model version, drift rows replaced.
    again = run_month(11, threshold_ratio=2.0, retrain_on=["rmse", "estimated_rmse"])
    assert again == s2
    assert _side_effects(pipeline_env) == fx2

    # Month 3: a month of stars (appeal two std higher, scores near the top). The month-1
    # champion saw too few such pictures: on this month it is worse than predicting the mean,
    # so the default threshold retrains, and the challenger trained on this month wins.
    s3 = run_month(12, pool=str(star_pool), threshold_ratio=THRESHOLD)
    assert {k: s3[k] for k in ("train_challenger", "evaluate_challenger", "promote", "export")} == (
        dict.fromkeys(("train_challenger", "evaluate_challenger", "promote", "export"), SUCCESS)
    )
    assert (s3["skip_training"], s3["keep_champion"]) == (SKIPPED, SKIPPED)
    assert s3["drift"] == SUCCESS and s3["no_reference"] == SKIPPED
    fx3 = _side_effects(pipeline_env)
    assert len(fx3["commits"]) == len(fx2["commits"]) + 1
    assert fx3["versions"] == [1, 2]
    assert (fx3["aliases"]["champion"], fx3["aliases"]["previous"]) == ("2", "1")
    assert "challenger" not in fx3["aliases"]
    assert fx3["drift_rows"] > fx2["drift_rows"]
    # Measured with the champion that served month 3 (v1, before the promotion), against its
    # baseline: the stars' scores are a drift of the label, which the verdict names.
    commit3 = fx3["commits"][0]
    month3 = fx3["drift_runs"][-1]
    assert month3[:5] == (commit3, commit1, "1", datetime(2026, 12, 1), True)
    assert "Pawpularity (kolmogorov_smirnov" in month3[5]

    # The decisions were the data's, by a clear margin (stored evaluations, not recomputed).
    import bentoml

    from pawpaw import evaluation
    from pawpaw.config import get_settings
    from pawpaw.tracking import mlflow_client
    from pawpaw_airflow import pipeline_settings

    get_settings.cache_clear()
    settings = pipeline_settings()
    old = evaluation.evaluate(settings, commit3, version="1", progress=False)
    new = evaluation.evaluate(settings, commit3, version="2", progress=False)
    assert old.rmse > max(THRESHOLD, 1.0) * old.mean_rmse, old.summary()  # worse than the mean
    assert new.rmse < 0.8 * old.rmse, (old.summary(), new.summary())

    # The new champion was exported: one new model and bento, both labelled with version 2 and
    # month 3's commit, and the bento pins that model.
    assert len(fx3["bentos"]) == 2 and len(fx3["bento_models"]) == 2
    exported = _exports(settings)
    assert sorted(exported) == ["1", "2"]
    bento = exported["2"]
    trained_run = mlflow_client(settings).get_model_version(settings.registered_model, "2").run_id
    assert (bento.info.labels["commit_id"], bento.info.labels["run_id"]) == (commit3, trained_run)
    model = bento.info.labels["model_tag"]
    assert model != exported["1"].info.labels["model_tag"]
    model_labels = bentoml.models.get(model).info.labels
    assert {k: model_labels[k] for k in ("version", "commit_id", "run_id", "stage")} == {
        "version": "2",
        "commit_id": commit3,
        "run_id": trained_run,
        "stage": "champion",
    }
    pin = json.loads(Path(bento.path, "src", "champion.json").read_text())
    assert pin["model_tag"] == model

    # Rerun month 2 after month 3 (the champion changed meanwhile): still no new commit, model
    # version, bento or drift row; month 2 is measured again by the model that served it (v1),
    # so its drift rows are replaced.
    late = run_month(11, threshold_ratio=2.0, retrain_on=["rmse", "estimated_rmse"])
    assert late["skip_training"] == SUCCESS and late["drift"] == SUCCESS
    assert _side_effects(pipeline_env) == fx3

    # The CLI measures a month the same way: month 2 with the model that served it (v1),
    # against v1's baseline; its rows are replaced (nothing added), the JSON names the verdict.
    from typer.testing import CliRunner

    from pawpaw.cli import app

    # The CLI reads PAWPAW_* settings; the tasks found the same stores through Connections.
    monkeypatch.setenv("PAWPAW_MLFLOW_TRACKING_URI", settings.tracking_uri)
    for name in ("lakefs_endpoint", "lakefs_access_key_id", "lakefs_repo"):
        monkeypatch.setenv(f"PAWPAW_{name.upper()}", str(getattr(settings, name)))
    monkeypatch.setenv(
        "PAWPAW_LAKEFS_SECRET_ACCESS_KEY", settings.lakefs_secret_access_key.get_secret_value()
    )
    get_settings.cache_clear()
    cli = CliRunner().invoke(app, ["drift", "measure", "--commit", commit2, "--json"])
    assert cli.exit_code == 0, cli.output
    measured = json.loads(cli.stdout)
    assert (measured["analysis_commit"], measured["reference_commit"]) == (commit2, commit1)
    assert (measured["model_version"], measured["month"]) == ("1", "2026-11")  # as stored
    assert {"alert", "reasons", "estimated_rmse", "rmse_analysis", "tests"} <= set(measured)
    assert len(measured["tests"]) > 20
    assert _side_effects(pipeline_env) == fx3
