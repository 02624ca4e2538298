"""Training a challenger on one lakeFS commit and registering it in MLflow.

Two modes, one servable artifact (:mod:`pawpaw.model.pyfunc`):

- ``head`` (default, CPU, seconds): embed the train/val images with the frozen pretrained
  backbone (ONNX Runtime, embeddings cached per backbone under ``data_dir/embeddings``) and fit
  regression heads (:func:`pawpaw.model.heads.fit_best_head`), keeping the best on val RMSE;
- ``finetune`` (the GPU path): :func:`pawpaw.model.finetune.finetune` trains the whole network; its
  exported backbone and linear head (sigmoid x 100) make the model.

Everything is computed before anything is written to MLflow, and the version is registered
last, so bad input (empty split, a commit without the sample files, a corrupt image) raises
:class:`TrainingError` and registers nothing. Training is idempotent: the same
(commit, mode, config) — its ``train_key`` — returns the version registered before.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pawpaw.config import TRAIN_MODES
from pawpaw.model.heads import HEAD_KINDS, FittedHead, HeadError, fit_best_head
from pawpaw.progress import say
from pawpaw.registry import CHALLENGER, CHAMPION, alias_version, set_alias
from pawpaw.schema import ID, TARGET
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
    from mlflow import MlflowClient

    from pawpaw.config import Settings
    from pawpaw.data.labeled import LabeledImages
    from pawpaw.model.preprocess import PreprocessConfig

__all__ = ["TrainResult", "TrainingError", "finetune_config", "register_model", "train"]

MODEL_ARTIFACT = "model"
VAL_PREDICTIONS_ARTIFACT = "val_predictions.parquet"


class TrainingError(RuntimeError):
    """Training input that cannot be used; the message names the commit, split, row or file."""


@dataclass(frozen=True)
class TrainResult:
    """What a training produced (JSON-friendly: the DAG passes it on as a dict)."""

    run_id: str
    version: str
    mode: str
    val_rmse: float
    train_seconds: float  # loading + embedding/fine-tuning + fitting (not the MLflow upload)
    commit_id: str
    head: str  # e.g. "svr(C=4,epsilon=0.1)"
    train_key: str
    n_train: int = 0
    n_val: int = 0
    candidates: dict[str, float] = field(default_factory=dict)
    reused: bool = False  # True: this (commit, mode, config) was registered before

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def finetune_config(settings: Settings) -> Any:
    """The default fine-tuning config: a few epochs of the configured backbone."""
    from pawpaw.model.finetune import FinetuneConfig

    return FinetuneConfig(
        backbone=settings.backbone, weights=settings.backbone_weights, epochs=3, patience=2
    )


def _config(settings: Settings, mode: str, head_kinds: Sequence[str]) -> dict[str, Any]:
    """Everything besides the data that decides the model: what the train_key hashes."""
    config: dict[str, Any] = {
        "backbone": settings.backbone,
        "backbone_weights": settings.backbone_weights,
    }
    if mode == "head":
        config["head_kinds"] = list(head_kinds)
    else:
        config["finetune"] = finetune_config(settings).to_dict()
    return config


def _train_key(commit_id: str, mode: str, config: dict[str, Any]) -> str:
    text = json.dumps({"commit": commit_id, "mode": mode, "config": config}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _existing_version(settings: Settings, ml: MlflowClient, train_key: str) -> Any | None:
    """The registered version with this train_key (the oldest, should there be several)."""
    name = settings.registered_model
    if not ml.search_registered_models(filter_string=f"name = '{name}'"):
        return None
    found = ml.search_model_versions(f"name = '{name}' and tags.`pawpaw.train_key` = '{train_key}'")
    return min(found, key=lambda mv: int(mv.version)) if found else None


def _val_rmse(head: FittedHead) -> float:
    return float("nan") if head.val_rmse is None else float(head.val_rmse)


def _param_value(value: Any) -> str:
    # MLflow params are strings of at most 6,000 characters; structures go in as JSON.
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def _metric_key(name: str) -> str:
    # MLflow metric names allow letters, digits, _ - . / and spaces.
    return re.sub(r"[^\w.\-/ ]+", "_", name).strip("_")


def _load_splits(
    settings: Settings, commit_id: str, lakefs_client: lakefs.Client | None
) -> tuple[LabeledImages, LabeledImages]:
    from pawpaw.versioning import VersioningError, load_split

    try:
        train = load_split(settings, commit_id, "train", client=lakefs_client)
        val = load_split(settings, commit_id, "val", client=lakefs_client)
    except VersioningError as exc:
        raise TrainingError(f"commit {commit_id}: {exc}") from exc
    for name, split in (("train", train), ("val", val)):
        if len(split) == 0:
            raise TrainingError(f"commit {commit_id}: the {name} split is empty ({split.source})")
        y = split.frame[TARGET].to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(y) | (y < 1) | (y > 100))
        if len(bad):
            row = int(bad[0])
            raise TrainingError(
                f"{split.source}: row {row} (Id={split.frame[ID].iloc[row]}) has "
                f"{TARGET}={y[row]}, expected 1..100"
            )
    return train, val


def _targets(split: LabeledImages) -> np.ndarray:
    return split.frame[TARGET].to_numpy(dtype=np.float64)


def _fit_heads(
    settings: Settings,
    train: LabeledImages,
    val: LabeledImages,
    head_kinds: Sequence[str],
    progress: bool,
) -> tuple[Path, PreprocessConfig, str, FittedHead, np.ndarray]:
    from pawpaw.model.embed import Embedder, EmbeddingCache

    embedder = Embedder.from_settings(settings)
    cache = EmbeddingCache.for_embedder(embedder, settings)
    try:
        x_train = embedder.embed(train, cache=cache, progress=progress)
        x_val = embedder.embed(val, cache=cache, progress=progress)
    except ValueError as exc:  # names the image Id and its source
        raise TrainingError(str(exc)) from exc
    say(progress, f"fitting heads {list(head_kinds)} on {x_train.shape[0]} x {x_train.shape[1]}")
    try:
        head = fit_best_head(
            x_train,
            _targets(train),
            x_val,
            _targets(val),
            kinds=head_kinds,
            log=(lambda line: say(True, line)) if progress else None,
        )
    except HeadError as exc:
        raise TrainingError(f"fitting heads on {train.source}: {exc}") from exc
    return (
        embedder.onnx_path,
        embedder.preprocess_config,
        embedder.backbone_id,
        head,
        head.predict(x_val),
    )


def _finetune(
    settings: Settings, train: LabeledImages, val: LabeledImages, progress: bool
) -> tuple[Path, PreprocessConfig, str, FittedHead, list[dict[str, float]], np.ndarray]:
    from pawpaw.model.embed import Embedder
    from pawpaw.model.finetune import finetune

    cfg = finetune_config(settings)
    try:
        result = finetune(
            train, val, cfg, progress=progress, out_dir=settings.data_dir / "backbones"
        )
    except ValueError as exc:
        raise TrainingError(f"fine-tuning on {train.source}: {exc}") from exc
    head = FittedHead(
        "linear",
        result.head().arrays,
        transform=result.target_transform,
        params={"family": "finetuned-linear", "best_epoch": result.best_epoch},
        val_rmse=result.val_rmse,
        candidates={"finetuned-linear": result.val_rmse},
    )
    # Val predictions through the exported graph: exactly what the served model computes.
    features = Embedder(result.onnx_path, threads=settings.embed_threads).embed(val)
    return (
        result.onnx_path,
        result.preprocess_config,
        result.backbone_id,
        head,
        result.history,
        head.predict(features),
    )


def _reused(
    settings: Settings, ml: MlflowClient, existing: Any, *, commit_id: str, mode: str, key: str
) -> TrainResult:
    """The result of a training registered before; it becomes challenger again unless it is
    the champion (a rerun finishes what it started)."""
    version = str(existing.version)
    if alias_version(settings, CHAMPION, ml) != version:
        set_alias(settings, CHALLENGER, version, ml)
    metrics = ml.get_run(existing.run_id).data.metrics
    return TrainResult(
        run_id=existing.run_id,
        version=version,
        mode=mode,
        val_rmse=float(metrics.get("val_rmse", float("nan"))),
        train_seconds=float(metrics.get("train_seconds", 0.0)),
        commit_id=commit_id,
        head=existing.tags.get(HEAD_TAG, ""),
        train_key=key,
        n_train=int(metrics.get("n_train", 0)),
        n_val=int(metrics.get("n_val", 0)),
        reused=True,
    )


def _logged(
    settings: Settings,
    *,
    commit_id: str,
    mode: str,
    backbone_id: str,
    head: FittedHead,
    config: dict[str, Any],
    sizes: tuple[int, int],
    train_seconds: float,
    noise_floor: float | None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """The training run's params and metrics."""
    n_train, n_val = sizes
    params = {
        "commit_id": commit_id,
        "mode": mode,
        "backbone": settings.backbone,
        "backbone_weights": settings.backbone_weights,
        "backbone_id": backbone_id,
        "head_kind": head.kind,
        "head": head.name,
        "target_transform": head.transform,
        "n_train": n_train,
        "n_val": n_val,
        "dim": head.dim,
        **{f"head.{k}": v for k, v in head.params.items()},
        **{f"config.{k}": v for k, v in config.items()},
    }
    metrics = {
        "val_rmse": _val_rmse(head),
        "train_seconds": train_seconds,
        "n_train": float(n_train),
        "n_val": float(n_val),
        **{f"val_rmse/{_metric_key(n)}": v for n, v in head.candidates.items()},
    }
    if noise_floor is not None:
        metrics["noise_floor"] = float(noise_floor)
    return params, metrics


def train(
    settings: Settings,
    commit_id: str,
    *,
    mode: str = "head",
    progress: bool = True,
    lakefs_client: lakefs.Client | None = None,
    head_kinds: Sequence[str] = HEAD_KINDS,
) -> TrainResult:
    """Train on ``commit_id``'s train/val splits, log the run, register the model as
    ``challenger``; return the existing version when this (commit, mode, config) was trained."""
    from pawpaw.versioning import VersioningError, sample_info

    if mode not in TRAIN_MODES:
        raise TrainingError(f"mode must be one of {TRAIN_MODES}, got {mode!r}")
    unknown = sorted(set(head_kinds) - set(HEAD_KINDS))
    if unknown or not head_kinds:
        raise TrainingError(f"head kinds must be a non-empty subset of {HEAD_KINDS}: {unknown}")
    started = time.monotonic()
    try:
        info = sample_info(settings, commit_id, client=lakefs_client)
    except VersioningError as exc:
        raise TrainingError(f"commit {commit_id}: {exc}") from exc
    commit_id = info["commit_id"]  # the full id, whatever abbreviation was given
    config = _config(settings, mode, head_kinds)
    key = _train_key(commit_id, mode, config)

    ml = mlflow_client(settings)
    existing = _existing_version(settings, ml, key)
    if existing is not None:
        say(progress, f"commit {commit_id[:12]} ({mode}) is already v{existing.version}: reused")
        return _reused(settings, ml, existing, commit_id=commit_id, mode=mode, key=key)

    train_split, val_split = _load_splits(settings, commit_id, lakefs_client)
    say(
        progress,
        f"training ({mode}) on commit {commit_id[:12]}: "
        f"{len(train_split)} train, {len(val_split)} val",
    )
    history: list[dict[str, float]] = []
    if mode == "head":
        onnx_path, pp, backbone_id, head, val_pred = _fit_heads(
            settings, train_split, val_split, head_kinds, progress
        )
    else:
        onnx_path, pp, backbone_id, head, history, val_pred = _finetune(
            settings, train_split, val_split, progress
        )
    train_seconds = time.monotonic() - started
    say(progress, f"best head {head.name}: val RMSE {_val_rmse(head):.3f} ({train_seconds:.1f}s)")

    params, metrics = _logged(
        settings,
        commit_id=commit_id,
        mode=mode,
        backbone_id=backbone_id,
        head=head,
        config=config,
        sizes=(len(train_split), len(val_split)),
        train_seconds=train_seconds,
        noise_floor=info.get("noise_floor"),
    )
    val_frame = val_split.frame[[ID, TARGET]].copy()
    val_frame.insert(1, "prediction", val_pred)
    run_id, version = register_model(
        settings,
        commit_id=commit_id,
        mode=mode,
        onnx_path=onnx_path,
        preprocess_config=pp,
        backbone_id=backbone_id,
        head=head,
        train_key=key,
        params=params,
        metrics=metrics,
        history=history,
        val_predictions=val_frame,
        progress=progress,
    )
    return TrainResult(
        run_id=run_id,
        version=version,
        mode=mode,
        val_rmse=_val_rmse(head),
        train_seconds=train_seconds,
        commit_id=commit_id,
        head=head.name,
        train_key=key,
        n_train=len(train_split),
        n_val=len(val_split),
        candidates=dict(head.candidates),
    )


def register_model(
    settings: Settings,
    *,
    commit_id: str,
    mode: str,
    onnx_path: Path,
    preprocess_config: PreprocessConfig,
    backbone_id: str,
    head: FittedHead,
    train_key: str,
    params: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    history: Sequence[dict[str, float]] = (),
    val_predictions: Any = None,
    progress: bool = True,
) -> tuple[str, str]:
    """Log one training run holding the servable model and register it as ``challenger``.

    Returns (run_id, version). The run is deleted again if anything fails before the version
    exists, so a failure leaves no half-logged training behind.
    """
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    from pawpaw.model.pyfunc import save_model

    ml = mlflow_client(settings)
    experiment_id = ensure_experiment(settings, settings.mlflow_experiment, ml)
    tags = {
        "pawpaw.kind": "training",
        COMMIT_TAG: commit_id,
        MODE_TAG: mode,
        "pawpaw.train_key": train_key,
        "pawpaw.backbone_id": backbone_id,
        HEAD_TAG: head.name,
    }
    with tempfile.TemporaryDirectory(prefix="pawpaw-train-") as tmp:
        model_dir = save_model(
            Path(tmp) / MODEL_ARTIFACT,
            onnx_path=onnx_path,
            preprocess_config=preprocess_config,
            head=head,
            metadata={"commit_id": commit_id, "mode": mode, "backbone_id": backbone_id},
        )
        run_name = f"{mode}-{commit_id[:12]}"
        with guarded_run(ml, experiment_id, tags=tags, run_name=run_name) as run:
            run_id = run.info.run_id
            now = int(time.time() * 1000)
            ml.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()]
                + [
                    Metric(f"epoch/{k}", float(v), now, int(row.get("epoch", i + 1)))
                    for i, row in enumerate(history)
                    for k, v in row.items()
                    if k != "epoch"
                ],
                params=[Param(k, _param_value(v)) for k, v in (params or {}).items()],
            )
            ml.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT)
            if val_predictions is not None:
                path = Path(tmp) / VAL_PREDICTIONS_ARTIFACT
                val_predictions.to_parquet(path, index=False)
                ml.log_artifact(run_id, str(path))
            ml.set_terminated(run_id, "FINISHED")
            try:
                ml.create_registered_model(
                    settings.registered_model,
                    description="Pawpularity (1..100) of a pet photo; see pawpaw.model.pyfunc.",
                )
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            mv = ml.create_model_version(
                settings.registered_model,
                source=f"{run.info.artifact_uri}/{MODEL_ARTIFACT}",
                run_id=run_id,
                tags=tags,
                description=f"{mode} on commit {commit_id}: {head.name}",
            )
    version = str(mv.version)
    ml.set_model_version_tag(settings.registered_model, version, "pawpaw.run_id", run_id)
    set_alias(settings, CHALLENGER, version, ml)
    say(progress, f"registered {settings.registered_model} v{version} (run {run_id}) as challenger")
    return run_id, version
