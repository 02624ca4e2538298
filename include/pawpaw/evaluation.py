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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pawpaw.decisions import EvalResult
from pawpaw.metrics import regression_metrics, rmse
from pawpaw.progress import Progress, say
from pawpaw.registry import (
    CHAMPION,
    RegistryError,
    alias_version,
    check_version,
    training_commit,
)
from pawpaw.schema import FLAGS, ID, TARGET
from pawpaw.tracking import (
    COMMIT_TAG,
    HEAD_TAG,
    MODE_TAG,
    ensure_experiment,
    guarded_run,
    mlflow_client,
)

if TYPE_CHECKING:
    import lakefs
    import pandas as pd
    from mlflow import MlflowClient

    from pawpaw.config import Settings

__all__ = [
    "PREDICTIONS_ARTIFACT",
    "EvaluationError",
    "describe_models",
    "evaluate",
    "evaluation_experiment",
    "evaluations_of",
    "head_to_head",
    "load_model",
    "load_predictions",
]

PREDICTIONS_ARTIFACT = "predictions.parquet"
_BATCH = 128  # images per pyfunc call; the next chunk is fetched while one is scored
_FETCH_WORKERS = 8  # lakeFS reads are I/O bound


class EvaluationError(RuntimeError):
    """An evaluation that cannot be done (unknown version, empty test split, bad image)."""


def evaluation_experiment(settings: Settings) -> str:
    return f"{settings.mlflow_experiment}-evaluations"


# --- finding stored evaluations ---------------------------------------------------------------
def _eval_runs(
    settings: Settings,
    ml: MlflowClient,
    *,
    version: str | None = None,
    commit_id: str | None = None,
    max_results: int = 1000,
) -> list[Any]:
    experiment = ml.get_experiment_by_name(evaluation_experiment(settings))
    if experiment is None:
        return []
    clauses = [
        f"tags.`pawpaw.registered_model` = '{settings.registered_model}'",
        "attributes.status = 'FINISHED'",
    ]
    if version is not None:
        clauses.append(f"tags.`pawpaw.model_version` = '{version}'")
    if commit_id is not None:
        clauses.append(f"tags.`{COMMIT_TAG}` = '{commit_id}'")
    return ml.search_runs(
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
        commit_id=tags[COMMIT_TAG],
        rmse=float(m["rmse"]),
        mae=float(m["mae"]),
        r2=float(m["r2"]),
        mean_rmse=float(m["mean_rmse"]),
        n_test=int(m["n_test"]),
        run_id=run.info.run_id,
        noise_floor=float(m["noise_floor"]) if "noise_floor" in m else None,
    )


def evaluations_of(
    settings: Settings, version: str, *, ml: MlflowClient | None = None
) -> list[EvalResult]:
    """Every stored evaluation of ``version``, newest first."""
    ml = ml or mlflow_client(settings)
    return [_result_of(r) for r in _eval_runs(settings, ml, version=str(version))]


def load_predictions(settings: Settings, version: str, commit_id: str) -> pd.DataFrame:
    """The stored predictions of ``version`` on ``commit_id``'s test split.

    Columns: ``Id``, the twelve flags, ``prediction``, ``Pawpularity``.
    """
    import pandas as pd

    ml = mlflow_client(settings)
    runs = _eval_runs(settings, ml, version=str(version), commit_id=commit_id, max_results=1)
    if not runs:
        raise EvaluationError(
            f"no evaluation of {settings.registered_model} v{version} on commit {commit_id}: "
            "run `pawpaw evaluate` first"
        )
    with tempfile.TemporaryDirectory(prefix="pawpaw-preds-") as tmp:
        local = ml.download_artifacts(runs[0].info.run_id, PREDICTIONS_ARTIFACT, tmp)
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
    """Scores of every row of ``data`` (LabeledImages) by the pyfunc, as it serves.

    The next chunk's images are fetched (concurrently: lakeFS reads are I/O bound) while this
    chunk is scored; the pyfunc's predictor overlaps decoding with inference inside a chunk.
    """
    import pandas as pd

    from pawpaw.model.embed import prefetch_batches

    ids = [str(i) for i in data.frame[ID]]
    out = np.empty(len(ids), dtype=np.float64)
    counter = Progress(len(ids), "  scored test images", enabled=progress, unit="img")
    with ThreadPoolExecutor(max_workers=_FETCH_WORKERS, thread_name_prefix="pawpaw-fetch") as pool:
        batches = prefetch_batches(pool, lambda i: data.load(ids[i]), len(ids), _BATCH)
        try:
            for start, fetched in batches:
                chunk = ids[start : start + len(fetched)]
                images = [f.result() for f in fetched]
                try:
                    scores = model.predict(pd.DataFrame({"image": images}))
                except Exception as exc:
                    raise EvaluationError(
                        f"{data.source or 'test split'}: scoring rows {start}.."
                        f"{start + len(chunk) - 1} (Ids {chunk[0]}..{chunk[-1]}) failed: {exc}"
                    ) from exc
                out[start : start + len(chunk)] = np.asarray(scores, dtype=np.float64).reshape(-1)
                counter.advance(len(chunk))
        finally:
            batches.close()  # cancels the next chunk's queued reads when this one failed
    return out


def _metrics(y: np.ndarray, pred: np.ndarray, train_mean: float) -> dict[str, float]:
    return {
        **regression_metrics(y, pred),
        "mean_rmse": rmse(y, np.full_like(y, train_mean)),
        "n_test": float(len(y)),
    }


def evaluate(
    settings: Settings,
    commit_id: str,
    *,
    version: str | None = None,
    lakefs_client: lakefs.Client | None = None,
    progress: bool = True,
) -> EvalResult | None:
    """RMSE, MAE, R^2 and the mean-predictor RMSE of ``version`` (None: the champion) on the
    TEST split of ``commit_id``; None when no version is given and there is no champion.

    Reuses a stored evaluation of the same (version, commit); otherwise computes and stores it.
    """
    from pawpaw.versioning import VersioningError, load_split, sample_info

    ml = mlflow_client(settings)
    name = settings.registered_model
    if version is None:
        version = alias_version(settings, CHAMPION, ml)
        if version is None:
            say(progress, f"model {name!r} has no champion yet: nothing to evaluate")
            return None
    try:
        version = check_version(settings, str(version), ml)
    except RegistryError as exc:
        raise EvaluationError(str(exc)) from exc

    try:
        info = sample_info(settings, commit_id, client=lakefs_client)
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
        test = load_split(settings, commit_id, "test", client=lakefs_client)
        train = load_split(settings, commit_id, "train", client=lakefs_client)
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


def head_to_head(
    settings: Settings,
    version: str,
    *,
    lakefs_client: lakefs.Client | None = None,
    progress: bool = True,
) -> tuple[EvalResult | None, EvalResult]:
    """The champion (None if there is none) and ``version``, both evaluated on the test split
    of the commit ``version`` was trained on: the inputs of ``decisions.should_promote``."""
    try:
        commit = training_commit(settings, version)
    except RegistryError as exc:
        raise EvaluationError(str(exc)) from exc
    champion = evaluate(settings, commit, lakefs_client=lakefs_client, progress=progress)
    challenger = evaluate(
        settings, commit, version=version, lakefs_client=lakefs_client, progress=progress
    )
    assert challenger is not None  # an explicit version always evaluates (or raises)
    return champion, challenger


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
        COMMIT_TAG: commit_id,
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


# --- reports -----------------------------------------------------------------------------------
def describe_models(settings: Settings) -> list[dict[str, Any]]:
    """Every version of the registered model, newest first: aliases, training facts, metrics.

    Keys: ``version``, ``aliases``, ``created`` (ISO), ``run_id``, ``commit_id``, ``mode``,
    ``head``, ``val_rmse``, and ``evaluations`` (list of {commit_id, rmse, mean_rmse, mae, r2},
    newest first).
    """
    from datetime import UTC, datetime

    ml = mlflow_client(settings)
    name = settings.registered_model
    if not ml.search_registered_models(filter_string=f"name = '{name}'"):
        return []
    versions = ml.search_model_versions(f"name = '{name}'")
    aliases: dict[str, list[str]] = {}
    for alias, v in ml.get_registered_model(name).aliases.items():
        aliases.setdefault(str(v), []).append(alias)
    rows = []
    for mv in sorted(versions, key=lambda m: int(m.version), reverse=True):
        metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                metrics = ml.get_run(mv.run_id).data.metrics
            except Exception:  # a deleted run: the version stays listable
                metrics = {}
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC).isoformat(
                    timespec="seconds"
                ),
                "run_id": mv.run_id,
                "commit_id": mv.tags.get(COMMIT_TAG),
                "mode": mv.tags.get(MODE_TAG),
                "head": mv.tags.get(HEAD_TAG),
                "val_rmse": metrics.get("val_rmse"),
                "evaluations": [
                    {
                        "commit_id": e.commit_id,
                        "rmse": e.rmse,
                        "mean_rmse": e.mean_rmse,
                        "mae": e.mae,
                        "r2": e.r2,
                    }
                    for e in evaluations_of(settings, str(mv.version), ml=ml)
                ],
            }
        )
    return rows
