"""DagBag integrity: every DAG imports, is documented, tagged, retried and light to parse."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.fixtures.airflow import REPO

pytestmark = pytest.mark.dags

HEAVY = ("torch", "timm", "mlflow", "pandas", "numpy", "bentoml", "nannyml", "lakefs", "sklearn")


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert "pawpularity_monthly" in dagbag.dags


def test_every_dag_is_documented_tagged_and_retried(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and len(dag.doc_md) > 200, f"{dag_id} has no doc_md"
        assert dag.catchup is False, f"{dag_id} catches up"
        for t in dag.tasks:
            assert t.retries >= 2, f"{dag_id}.{t.task_id} retries={t.retries}"
            assert t.owner == "pawpaw"


def test_parsing_imports_nothing_heavy() -> None:
    code = (
        "import json, sys; sys.path[:0] = ['plugins', 'dags']; import pawpularity_monthly; "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
        env=os.environ.copy(),
    )  # fmt: skip
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_flow_shape(dagbag) -> None:
    dag = dagbag.dags["pawpularity_monthly"]
    down = {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}
    assert down["sample"] == ["drift", "evaluate_challenger", "evaluate_champion",
                              "train_challenger"]  # fmt: skip
    # Drift is measured with the champion that served the month, before anything can change it.
    assert down["evaluate_champion"] == ["drift", "has_reference", "needs_training",
                                         "should_promote"]  # fmt: skip
    assert down["has_reference"] == ["drift", "no_reference"]
    assert down["drift"] == ["needs_training"]
    assert down["no_reference"] == ["needs_training"]
    assert down["needs_training"] == ["skip_training", "train_challenger"]
    assert down["should_promote"] == ["keep_champion", "promote"]
    assert down["promote"] == ["export"]
    assert sorted(t.task_id for t in dag.get_task("done").upstream_list) == [
        "export", "keep_champion", "skip_training"]  # fmt: skip
    # Joins after a branch must not inherit the default all_success (they'd be skipped).
    for join in ("needs_training", "done"):
        assert dag.get_task(join).trigger_rule == "none_failed_min_one_success"


def test_every_run_time_choice_is_a_typed_param(dagbag) -> None:
    params = dagbag.dags["pawpularity_monthly"].params
    expected = {"pool", "sample_size", "seed", "bias", "threshold_ratio", "force_retrain",
                "train_mode", "retrain_on"}  # fmt: skip
    assert set(params.keys()) == expected
    for name in expected:
        param = params.get_param(name)
        assert param.schema.get("type") or param.schema.get("enum"), name
        assert param.description, name
    with pytest.raises(Exception, match=r"sample_size|minimum"):
        params.get_param("sample_size").resolve(value=3)
    with pytest.raises(Exception):  # noqa: B017  (airflow's ParamValidationError)
        params.get_param("train_mode").resolve(value="bogus")
    with pytest.raises(Exception, match="bogus"):
        params.get_param("retrain_on").resolve(value=["rmse", "bogus"])
    assert params.get_param("retrain_on").resolve(value=["drift"]) == ["drift"]
