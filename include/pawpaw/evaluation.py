"""Evaluating a registered model version on a commit's test split, once per (version, commit).

The model is scored exactly as it serves: the registered MLflow pyfunc is downloaded and run on
the test images read from lakeFS at that commit. The result is an MLflow run in the
``<experiment>-evaluations`` experiment, tagged with the registered model, version and commit;
evaluating the same pair again returns that run's result without computing anything. The run
also holds ``predictions.parquet`` (Id, the flags, prediction, Pawpularity) for drift analysis.

Baseline: the mean predictor (always predict the mean Pawpularity of the commit's TRAIN split),
the model that knows nothing about the photos. Its RMSE anchors the retrain threshold.
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pawpaw.progress import say
from pawpaw.registry import (
    CHAMPION,
    alias_version,
    ensure_experiment,
    guarded_run,
    is_missing,
    mlflow_client,
)
from pawpaw.schema import FLAGS, ID, TARGET

if TYPE_CHECKING:
    import lakefs
    import pandas as pd
    from mlflow import MlflowClient

    from pawpaw.config import Settings

__all__ = [
    "PREDICTIONS_ARTIFACT",
    "EvalResult",
    "EvaluationError",
    "evaluate",
    "evaluation_experiment",
    "evaluations_of",
    "load_model",
    "load_predictions",
    "previous_evaluated_commit",
]

PREDICTIONS_ARTIFACT = "predictions.parquet"
_BATCH = 64  # images fetched (concurrently) and scored per step
_FETCH_WORKERS = 8  # lakeFS reads are I/O bound


class EvaluationError(RuntimeError):
    """An evaluation that cannot be done (unknown version, empty test split, bad image)."""


@dataclass(frozen=True)
class EvalResult:
    """Metrics of one model version on one commit's test split (JSON-friendly for XCom)."""

    registered_model: str
    version: str
    commit_id: str
    rmse: float
    mae: float
    r2: float
    mean_rmse: float  # RMSE of predicting the train split's mean Pawpularity
    n_test: int
    run_id: str
    noise_floor: float | None = None  # the synthetic generator's best achievable RMSE

    @property
    def ratio(self) -> float:
        """RMSE relative to the mean predictor (< 1: better than knowing nothing)."""
        return self.rmse / self.mean_rmse if self.mean_rmse else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown EvalResult field(s) {unknown}")
        return cls(**data)

    def summary(self) -> str:
        floor = f", noise floor {self.noise_floor:.3f}" if self.noise_floor is not None else ""
        return (
            f"v{self.version} on commit {self.commit_id[:12]} (n={self.n_test}): "
            f"RMSE {self.rmse:.3f} (mean predictor {self.mean_rmse:.3f}{floor}), "
            f"MAE {self.mae:.3f}, R^2 {self.r2:.3f}"
        )


def evaluation_experiment(settings: Settings) -> str:
    return f"{settings.mlflow_experiment}-evaluations"


# --- finding stored evaluations ---------------------------------------------------------------
def _eval_runs(
    settings: Settings,
    client: MlflowClient,
    *,
    version: str | None = None,
    commit_id: str | None = None,
    max_results: int = 1000,
) -> list[Any]:
    experiment = client.get_experiment_by_name(evaluation_experiment(settings))
    if experiment is None:
        return []
    clauses = [
        f"tags.`pawpaw.registered_model` = '{settings.registered_model}'",
        "attributes.status = 'FINISHED'",
    ]
    if version is not None:
        clauses.append(f"tags.`pawpaw.model_version` = '{version}'")
    if commit_id is not None:
        clauses.append(f"tags.`pawpaw.commit_id` = '{commit_id}'")
    return client.search_runs(
        [experiment.experiment_id],
        filter_string=" and ".join(clauses),
        order_by=["attributes.start_time DESC"],
        max_results=max_results,
    )


def _result_of(run: Any) -> EvalResult:
    m, tags = run.data.metrics, run.data.tags
    return EvalResult(
        registered_model=tags["pawpaw.registered_model"],
        version=tags["pawpaw.model_version"],
        commit_id=tags["pawpaw.commit_id"],
        rmse=float(m["rmse"]),
        mae=float(m["mae"]),
        r2=float(m["r2"]),
        mean_rmse=float(m["mean_rmse"]),
        n_test=int(m["n_test"]),
        run_id=run.info.run_id,
        noise_floor=float(m["noise_floor"]) if "noise_floor" in m else None,
    )


def evaluations_of(
    settings: Settings, version: str, *, client: MlflowClient | None = None
) -> list[EvalResult]:
    """Every stored evaluation of ``version``, newest first."""
    client = client or mlflow_client(settings)
    return [_result_of(r) for r in _eval_runs(settings, client, version=str(version))]


def previous_evaluated_commit(settings: Settings, commit_id: str) -> str | None:
    """The newest evaluated sample commit *before* ``commit_id`` on main (drift's reference).

    Ordered by lakeFS history, not by when evaluations ran: rerunning an old month finds the
    same reference as its first run did, so its drift rows are replaced, not re-keyed.
    """
    from pawpaw import versioning

    history = [c.id for c in versioning.list_commits(settings, limit=1000)]  # newest first
    position = next((i for i, c in enumerate(history) if c.startswith(commit_id)), None)
    if position is None:
        raise EvaluationError(
            f"commit {commit_id} is not a sample commit on {settings.lakefs_repo}/"
            f"{settings.lakefs_branch}"
        )
    client = mlflow_client(settings)
    # One query per older commit, newest first (usually the first answers): no result cap.
    older = history[position + 1 :]
    return next(
        (c for c in older if _eval_runs(settings, client, commit_id=c, max_results=1)), None
    )


def load_predictions(settings: Settings, version: str, commit_id: str) -> pd.DataFrame:
    """The stored predictions of ``version`` on ``commit_id``'s test split.

    Columns: ``Id``, the twelve flags, ``prediction``, ``Pawpularity``.
    """
    import pandas as pd

    client = mlflow_client(settings)
    runs = _eval_runs(settings, client, version=str(version), commit_id=commit_id, max_results=1)
    if not runs:
        raise EvaluationError(
            f"no evaluation of {settings.registered_model} v{version} on commit {commit_id}: "
            "run `pawpaw evaluate` first"
        )
    with tempfile.TemporaryDirectory(prefix="pawpaw-preds-") as tmp:
        local = client.download_artifacts(runs[0].info.run_id, PREDICTIONS_ARTIFACT, tmp)
        return pd.read_parquet(local)


# --- computing ---------------------------------------------------------------------------------
def load_model(settings: Settings, version: str, dst: Path) -> Any:
    """The registered pyfunc model ``version`` (downloaded into ``dst``), ready to predict."""
    import mlflow

    # Resolve the version's source with our own client: a ``models:/`` URI would be resolved
    # against MLflow's process-global registry URI, not against these settings.
    source = mlflow_client(settings).get_model_version_download_uri(
        settings.registered_model, str(version)
    )
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=source, dst_path=str(dst), tracking_uri=settings.tracking_uri
    )
    return mlflow.pyfunc.load_model(local)


def _predict(model: Any, data: Any, progress: bool) -> np.ndarray:
    """Scores of every row of ``data`` (LabeledImages), images fetched concurrently."""
    import pandas as pd

    ids = [str(i) for i in data.frame[ID]]
    out = np.empty(len(ids), dtype=np.float64)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=_FETCH_WORKERS) as pool:
        for start in range(0, len(ids), _BATCH):
            chunk = ids[start : start + _BATCH]
            images = list(pool.map(data.load, chunk))
            try:
                scores = model.predict(pd.DataFrame({"image": images}))
            except Exception as exc:
                raise EvaluationError(
                    f"{data.source or 'test split'}: scoring rows {start}..{start + len(chunk) - 1}"
                    f" (Ids {chunk[0]}..{chunk[-1]}) failed: {exc}"
                ) from exc
            out[start : start + len(chunk)] = np.asarray(scores, dtype=np.float64).reshape(-1)
            done = start + len(chunk)
            rate = done / max(time.monotonic() - started, 1e-9)
            say(progress, f"  scored {done}/{len(ids)} test images ({rate:.1f} img/s)")
    return out


def _metrics(y: np.ndarray, pred: np.ndarray, train_mean: float) -> dict[str, float]:
    err = pred - y
    sst = float(np.sum((y - y.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(err**2))),
        "mae": float(np.mean(np.abs(err))),
        # R^2 is undefined on a constant target; report 0 (no better than the mean).
        "r2": float(1.0 - np.sum(err**2) / sst) if sst > 0 else 0.0,
        "mean_rmse": float(np.sqrt(np.mean((y - train_mean) ** 2))),
        "n_test": float(len(y)),
    }


def evaluate(
    settings: Settings,
    commit_id: str,
    *,
    version: str | None = None,
    client: lakefs.Client | None = None,
    progress: bool = True,
) -> EvalResult | None:
    """RMSE, MAE, R^2 and the mean-predictor RMSE of ``version`` (None: the champion) on the
    TEST split of ``commit_id``; None when no version is given and there is no champion.

    Reuses a stored evaluation of the same (version, commit); otherwise computes and stores it.
    """
    from mlflow.exceptions import MlflowException

    from pawpaw.versioning import VersioningError, load_split, sample_info

    ml = mlflow_client(settings)
    name = settings.registered_model
    if version is None:
        version = alias_version(settings, CHAMPION, ml)
        if version is None:
            say(progress, f"model {name!r} has no champion yet: nothing to evaluate")
            return None
    version = str(version)
    try:
        ml.get_model_version(name, version)
    except MlflowException as exc:
        if not is_missing(exc):
            raise
        raise EvaluationError(f"model {name!r} has no version {version!r}") from exc

    try:
        info = sample_info(settings, commit_id, client=client)
    except VersioningError as exc:
        raise EvaluationError(f"commit {commit_id}: {exc}") from exc
    commit_id = info["commit_id"]  # the full id: abbreviations must not split the cache
    noise_floor = info.get("noise_floor")

    runs = _eval_runs(settings, ml, version=version, commit_id=commit_id, max_results=1)
    if runs:
        result = _result_of(runs[0])
        say(progress, f"evaluation (stored, run {result.run_id}): {result.summary()}")
        return result

    try:
        test = load_split(settings, commit_id, "test", client=client)
        train = load_split(settings, commit_id, "train", client=client)
    except VersioningError as exc:
        raise EvaluationError(f"commit {commit_id}: {exc}") from exc
    if len(test) == 0 or len(train) == 0:
        raise EvaluationError(
            f"commit {commit_id}: the {'test' if len(test) == 0 else 'train'} split is empty"
        )
    say(progress, f"evaluating {name} v{version} on {len(test)} test images of {commit_id[:12]}")
    with tempfile.TemporaryDirectory(prefix="pawpaw-eval-") as tmp:
        model = load_model(settings, version, Path(tmp))
        pred = _predict(model, test, progress)
    y = test.frame[TARGET].to_numpy(dtype=np.float64)
    metrics = _metrics(y, pred, float(train.frame[TARGET].mean()))
    if noise_floor is not None:
        metrics["noise_floor"] = float(noise_floor)
    run_id = _store(settings, ml, version, commit_id, metrics, test.frame, pred)
    result = _result_of(ml.get_run(run_id))
    say(progress, f"evaluation: {result.summary()}")
    return result


def _store(
    settings: Settings,
    ml: MlflowClient,
    version: str,
    commit_id: str,
    metrics: dict[str, float],
    frame: pd.DataFrame,
    pred: np.ndarray,
) -> str:
    """One FINISHED run holding the metrics and predictions; nothing left behind on failure."""
    from mlflow.entities import Metric, Param

    experiment_id = ensure_experiment(settings, evaluation_experiment(settings), ml)
    tags = {
        "pawpaw.kind": "evaluation",
        "pawpaw.registered_model": settings.registered_model,
        "pawpaw.model_version": version,
        "pawpaw.commit_id": commit_id,
    }
    run_name = f"eval-v{version}-{commit_id[:12]}"
    with guarded_run(ml, experiment_id, tags=tags, run_name=run_name) as run:
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        ml.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            params=[
                Param("registered_model", settings.registered_model),
                Param("model_version", version),
                Param("commit_id", commit_id),
            ],
        )
        predictions = frame[[ID, *FLAGS]].copy()
        predictions["prediction"] = pred
        predictions[TARGET] = frame[TARGET].to_numpy()
        with tempfile.TemporaryDirectory(prefix="pawpaw-eval-") as tmp:
            path = Path(tmp) / PREDICTIONS_ARTIFACT
            predictions.to_parquet(path, index=False)
            ml.log_artifact(run_id, str(path))
        ml.set_terminated(run_id, "FINISHED")
    return run_id
