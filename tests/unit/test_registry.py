"""Registry decisions (retrain? promote?) and the evaluation result they read: pure logic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pawpaw.decisions import Decision, DriftSignal, EvalResult, needs_training, should_promote
from pawpaw.evaluation import _metrics

pytestmark = pytest.mark.unit


def _eval(version: str, rmse: float, *, commit: str = "c1", mean_rmse: float = 20.0) -> EvalResult:
    return EvalResult(
        registered_model="m",
        version=version,
        commit_id=commit,
        rmse=rmse,
        mae=rmse * 0.8,
        r2=0.1,
        mean_rmse=mean_rmse,
        n_test=100,
        run_id=f"run-{version}",
    )


def _drift(alert: bool, estimated: float, limit: float | None = 19.0) -> DriftSignal:
    return DriftSignal(alert, ("Blur (chi2 200, p=1e-40)",) if alert else (), estimated, limit)


def test_needs_training_on_drift_signals_says_which_fired() -> None:
    good = _eval("1", 15.0)  # within 0.95 x 20 = 19
    calm = needs_training(good, threshold_ratio=0.95, drift=_drift(False, 16.0))
    assert not calm
    assert "rmse: " in calm.reason and "estimated_rmse: " in calm.reason
    assert "drift: no alert" in calm.reason
    alert = needs_training(good, threshold_ratio=0.95, drift=_drift(True, 16.0))
    assert alert and alert.reason.startswith("drift: ") and "Blur" in alert.reason
    estimated = needs_training(good, threshold_ratio=0.95, drift=_drift(False, 19.5))
    assert estimated and estimated.reason.startswith("estimated_rmse: estimated RMSE 19.500")
    both = needs_training(_eval("1", 19.5), threshold_ratio=0.95, drift=_drift(True, 19.5))
    assert [part.split(":")[0] for part in both.reason.split(" | ")] == [
        "rmse", "estimated_rmse", "drift"]  # fmt: skip
    # The Param chooses which signals count: a drift alert alone is ignored without "drift".
    assert not needs_training(
        good, threshold_ratio=0.95, drift=_drift(True, 19.5), signals=("rmse",)
    )
    assert needs_training(_eval("1", 15.0), threshold_ratio=0.95, drift=_drift(True, 1.0),
                          signals=["drift"])  # fmt: skip
    # No drift run (first month, no reference): only the realized RMSE can fire.
    assert not needs_training(good, threshold_ratio=0.95, drift=None, signals=["drift"])
    with pytest.raises(ValueError, match="unknown retrain signal"):
        needs_training(good, threshold_ratio=0.95, signals=["vibes"])


def test_drift_signal_reads_a_drift_result() -> None:
    data = {"alert": True, "reasons": ["a", "b"], "estimated_rmse": 18.0, "rmse_limit": None,
            "month": "2026-02"}  # fmt: skip
    assert DriftSignal.from_dict(data) == DriftSignal(True, ("a", "b"), 18.0, None)


def test_needs_training_uses_the_ratio_to_the_mean_predictor() -> None:
    assert needs_training(None, threshold_ratio=0.95) == Decision(True, "there is no champion yet")
    assert needs_training(_eval("1", 10.0), threshold_ratio=0.95, force=True).value
    good = needs_training(_eval("1", 18.9, mean_rmse=20.0), threshold_ratio=0.95)
    assert not good and "within" in good.reason
    bad = needs_training(_eval("1", 19.1, mean_rmse=20.0), threshold_ratio=0.95)
    assert bad and "exceeds" in bad.reason
    # The same RMSE passes against a harder commit: the rule is relative, not a constant.
    assert not needs_training(_eval("1", 19.1, mean_rmse=22.0), threshold_ratio=0.95)
    with pytest.raises(ValueError, match="threshold_ratio"):
        needs_training(_eval("1", 1.0), threshold_ratio=0)


def test_should_promote_needs_strictly_lower_rmse_on_the_same_commit() -> None:
    assert should_promote(None, _eval("1", 19.0)).value
    assert should_promote(_eval("1", 18.0), _eval("2", 17.9)).value
    tie = should_promote(_eval("1", 18.0), _eval("2", 18.0))
    assert not tie and "not below" in tie.reason
    assert not should_promote(_eval("1", 18.0), _eval("2", 18.5))
    assert not should_promote(_eval("1", 18.0), _eval("1", 18.0))
    with pytest.raises(ValueError, match="evaluate both on one commit"):
        should_promote(_eval("1", 18.0, commit="a"), _eval("2", 10.0, commit="b"))


def test_eval_result_round_trips_through_json() -> None:
    result = _eval("3", 17.25)
    again = EvalResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    assert result.ratio == pytest.approx(17.25 / 20.0)
    with pytest.raises(ValueError, match="unknown EvalResult field"):
        EvalResult.from_dict({**result.to_dict(), "bogus": 1})


def test_metrics() -> None:
    y = np.array([10.0, 20.0, 30.0, 40.0])
    pred = np.array([12.0, 18.0, 33.0, 37.0])
    m = _metrics(y, pred, train_mean=20.0)
    assert m["rmse"] == pytest.approx(np.sqrt((4 + 4 + 9 + 9) / 4))
    assert m["mae"] == pytest.approx(2.5)
    assert m["r2"] == pytest.approx(1 - 26 / 500)
    assert m["mean_rmse"] == pytest.approx(np.sqrt((100 + 0 + 100 + 400) / 4))
    assert m["n_test"] == 4


def test_guarded_run_deletes_a_run_that_failed_midway(tmp_path) -> None:
    from mlflow import MlflowClient

    from pawpaw.tracking import guarded_run

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("x", artifact_location=(tmp_path / "a").as_uri())
    with (
        pytest.raises(RuntimeError, match="boom"),
        guarded_run(client, experiment, tags={"k": "v"}, run_name="failing") as run,
    ):
        client.log_param(run.info.run_id, "p", 1)
        raise RuntimeError("boom")
    assert client.search_runs([experiment]) == []
    with guarded_run(client, experiment, tags={"k": "v"}, run_name="ok") as run:
        client.set_terminated(run.info.run_id, "FINISHED")
    assert [r.info.run_id for r in client.search_runs([experiment])] == [run.info.run_id]


def test_evaluation_scores_in_order_and_names_the_rows_of_a_failed_chunk() -> None:
    import pandas as pd

    from pawpaw.data.labeled import LabeledImages
    from pawpaw.evaluation import _BATCH, EvaluationError, _predict

    ids = [f"id{i:04d}" for i in range(2 * _BATCH + 10)]
    data = LabeledImages(pd.DataFrame({"Id": ids}), lambda i: i.encode(), source="split")

    class Model:
        def __init__(self, fail_at: int | None = None) -> None:
            self.calls, self.fail_at = 0, fail_at

        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            self.calls += 1
            if self.calls == self.fail_at:
                raise ValueError("broken photo")
            return np.array([float(b.decode()[2:]) for b in frame["image"]])

    np.testing.assert_array_equal(_predict(Model(), data, False), np.arange(len(ids)))
    first, last = _BATCH, 2 * _BATCH - 1  # the second chunk
    with pytest.raises(EvaluationError, match=rf"split: scoring rows {first}\.\.{last} "
                       rf"\(Ids id{first:04d}\.\.id{last:04d}\) failed: broken photo"):  # fmt: skip
        _predict(Model(fail_at=2), data, False)
