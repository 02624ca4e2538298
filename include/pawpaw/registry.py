"""The MLflow model registry as the pipeline uses it: who is champion, and when that changes.

Aliases on the registered model ``settings.registered_model``:

- ``champion``: the version that serves;
- ``challenger``: the newest trained version, waiting for its comparison;
- ``previous``: the champion before the last promotion (what :func:`rollback` restores).

The decisions (:func:`needs_training`, :func:`should_promote`) are pure functions of evaluation
results, so the DAG, the CLI and the tests share one rule. Every MLflow call goes through a
client built from ``settings`` (:func:`mlflow_client`): no global tracking URI is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from pawpaw.config import Settings
    from pawpaw.evaluation import EvalResult

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS",
    "Decision",
    "RegistryError",
    "alias_version",
    "compare_with_champion",
    "describe_models",
    "ensure_experiment",
    "guarded_run",
    "is_missing",
    "mlflow_client",
    "needs_training",
    "promote",
    "rollback",
    "set_alias",
    "should_promote",
    "training_commit",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (unknown version, nothing to roll back to)."""


@dataclass(frozen=True)
class Decision:
    """A yes/no with the reason, as the DAG logs it and branches on it."""

    value: bool
    reason: str

    def __bool__(self) -> bool:
        return self.value

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- MLflow access ----------------------------------------------------------------------------
def _is_local_store(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "databricks"))


def mlflow_client(settings: Settings) -> MlflowClient:
    """A client for ``settings.tracking_uri`` (registry on the same store)."""
    from mlflow import MlflowClient

    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        # The embedded profile: the SQLite file lives in data_dir, which may not exist yet.
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(settings: Settings, name: str, client: MlflowClient | None = None) -> str:
    """The id of experiment ``name``, created when missing.

    With a local store the artifacts go under ``data_dir/mlartifacts`` (MLflow's own default,
    ``./mlruns``, would depend on the working directory); a server decides for itself.
    """
    from mlflow.exceptions import MlflowException

    client = client or mlflow_client(settings)
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    location = None
    if _is_local_store(settings.tracking_uri):
        location = (settings.data_dir / "mlartifacts" / name).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created concurrently by another process
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


@contextmanager
def guarded_run(
    client: MlflowClient, experiment_id: str, *, tags: dict[str, str], run_name: str
) -> Iterator[Run]:
    """Create a run and yield it; on any failure inside, delete it again, so a half-logged run
    is never found and reused (by evaluation's cache or training's idempotency)."""
    run = client.create_run(experiment_id, tags=tags, run_name=run_name)
    try:
        yield run
    except BaseException:
        client.delete_run(run.info.run_id)
        raise


def alias_version(settings: Settings, alias: str, client: MlflowClient | None = None) -> str | None:
    """The version an alias points to, or None (no alias, or no registered model yet)."""
    from mlflow.exceptions import MlflowException

    client = client or mlflow_client(settings)
    try:
        return str(client.get_model_version_by_alias(settings.registered_model, alias).version)
    except MlflowException as exc:
        if is_missing(exc):
            return None
        raise


def set_alias(
    settings: Settings, alias: str, version: str | None, client: MlflowClient | None = None
) -> None:
    """Point ``alias`` at ``version`` (None: remove the alias)."""
    client = client or mlflow_client(settings)
    name = settings.registered_model
    if version is None:
        if alias_version(settings, alias, client) is not None:
            client.delete_registered_model_alias(name, alias)
        return
    client.set_registered_model_alias(name, alias, str(version))


_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def is_missing(exc: Exception) -> bool:
    """True when an MLflow error says the thing asked for does not exist (not an outage)."""
    return getattr(exc, "error_code", None) in _MISSING


def _check_version(settings: Settings, version: str, client: MlflowClient) -> str:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version(settings.registered_model, str(version)).version)
    except MlflowException as exc:
        if not is_missing(exc):
            raise
        raise RegistryError(
            f"model {settings.registered_model!r} has no version {version!r} "
            f"(tracking at {settings.tracking_uri})"
        ) from exc


# --- decisions ---------------------------------------------------------------------------------
def needs_training(
    champion: EvalResult | None, *, threshold_ratio: float, force: bool = False
) -> Decision:
    """Retrain when forced, when there is no champion, or when the champion's test RMSE on
    the new commit exceeds ``threshold_ratio`` x that commit's mean-predictor RMSE."""
    if force:
        return Decision(True, "retraining was forced")
    if champion is None:
        return Decision(True, "there is no champion yet")
    if not threshold_ratio > 0:
        raise ValueError(f"threshold_ratio must be > 0, got {threshold_ratio}")
    limit = threshold_ratio * champion.mean_rmse
    if champion.rmse > limit:
        return Decision(
            True,
            f"champion v{champion.version} RMSE {champion.rmse:.3f} on commit "
            f"{champion.commit_id[:12]} exceeds {threshold_ratio:g} x mean-predictor RMSE "
            f"{champion.mean_rmse:.3f} = {limit:.3f}",
        )
    return Decision(
        False,
        f"champion v{champion.version} RMSE {champion.rmse:.3f} is within {threshold_ratio:g} x "
        f"mean-predictor RMSE {champion.mean_rmse:.3f} = {limit:.3f}",
    )


def should_promote(champion: EvalResult | None, challenger: EvalResult) -> Decision:
    """Promote only on a strictly lower RMSE on the same commit's test split (ties keep the
    champion); with no champion, promote. Results from different commits are an error."""
    if champion is None:
        return Decision(True, f"no champion: v{challenger.version} becomes the first")
    if champion.commit_id != challenger.commit_id:
        raise ValueError(
            f"cannot compare v{champion.version} on commit {champion.commit_id} with "
            f"v{challenger.version} on commit {challenger.commit_id}: evaluate both on one commit"
        )
    if champion.version == challenger.version:
        return Decision(False, f"v{challenger.version} is already the champion")
    if challenger.rmse < champion.rmse:
        return Decision(
            True,
            f"challenger v{challenger.version} RMSE {challenger.rmse:.3f} < champion "
            f"v{champion.version} RMSE {champion.rmse:.3f}",
        )
    return Decision(
        False,
        f"challenger v{challenger.version} RMSE {challenger.rmse:.3f} is not below champion "
        f"v{champion.version} RMSE {champion.rmse:.3f}",
    )


def training_commit(settings: Settings, version: str) -> str:
    """The lakeFS commit a registered version was trained on (its ``pawpaw.commit_id`` tag)."""
    client = mlflow_client(settings)
    version = _check_version(settings, version, client)
    commit = client.get_model_version(settings.registered_model, version).tags.get(
        "pawpaw.commit_id"
    )
    if not commit:
        raise RegistryError(
            f"{settings.registered_model} v{version} has no pawpaw.commit_id tag: "
            "it was not registered by pawpaw training"
        )
    return commit


def compare_with_champion(
    settings: Settings, version: str, *, client: Any = None, progress: bool = True
) -> Decision:
    """Evaluate the champion and ``version`` on the commit ``version`` was trained on (reusing
    stored evaluations) and apply :func:`should_promote`."""
    from pawpaw.evaluation import evaluate

    ml = mlflow_client(settings)
    version = _check_version(settings, version, ml)
    champion_version = alias_version(settings, CHAMPION, ml)
    if champion_version is None:
        return Decision(True, f"no champion: v{version} becomes the first")
    if champion_version == version:
        return Decision(False, f"v{version} is already the champion")
    commit = training_commit(settings, version)
    champion = evaluate(
        settings, commit, version=champion_version, client=client, progress=progress
    )
    challenger = evaluate(settings, commit, version=version, client=client, progress=progress)
    assert challenger is not None  # an explicit version always evaluates (or raises)
    return should_promote(champion, challenger)


# --- alias moves -------------------------------------------------------------------------------
def promote(settings: Settings, version: str) -> None:
    """``version`` becomes champion; the old champion becomes ``previous``; a ``challenger``
    alias on ``version`` is dropped. Idempotent: promoting the champion changes nothing else."""
    client = mlflow_client(settings)
    version = _check_version(settings, version, client)
    champion = alias_version(settings, CHAMPION, client)
    if champion != version:
        # previous first: a crash in between leaves previous == champion, and a rerun finishes.
        if champion is not None:
            set_alias(settings, PREVIOUS, champion, client)
        set_alias(settings, CHAMPION, version, client)
    if alias_version(settings, CHALLENGER, client) == version:
        set_alias(settings, CHALLENGER, None, client)


def rollback(settings: Settings) -> str:
    """Swap ``champion`` and ``previous``; return the restored champion's version."""
    client = mlflow_client(settings)
    previous = alias_version(settings, PREVIOUS, client)
    if previous is None:
        raise RegistryError(
            f"nothing to roll back to: model {settings.registered_model!r} has no "
            f"{PREVIOUS!r} alias (no promotion has replaced a champion yet)"
        )
    champion = alias_version(settings, CHAMPION, client)
    set_alias(settings, CHAMPION, previous, client)
    set_alias(settings, PREVIOUS, champion if champion != previous else None, client)
    return previous


def describe_models(settings: Settings) -> list[dict[str, Any]]:
    """Every version of the registered model, newest first: aliases, training facts, metrics.

    Keys: ``version``, ``aliases``, ``created`` (ISO), ``run_id``, ``commit_id``, ``mode``,
    ``head``, ``val_rmse``, and ``evaluations`` (list of {commit_id, rmse, mean_rmse, mae, r2},
    newest first).
    """
    from datetime import UTC, datetime

    from pawpaw.evaluation import evaluations_of

    client = mlflow_client(settings)
    name = settings.registered_model
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        return []
    versions = client.search_model_versions(f"name = '{name}'")
    aliases: dict[str, list[str]] = {}
    for alias, v in client.get_registered_model(name).aliases.items():
        aliases.setdefault(str(v), []).append(alias)
    rows = []
    for mv in sorted(versions, key=lambda m: int(m.version), reverse=True):
        metrics: dict[str, float] = {}
        if mv.run_id:
            try:
                metrics = client.get_run(mv.run_id).data.metrics
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
                "commit_id": mv.tags.get("pawpaw.commit_id"),
                "mode": mv.tags.get("pawpaw.mode"),
                "head": mv.tags.get("pawpaw.head"),
                "val_rmse": metrics.get("val_rmse"),
                "evaluations": [
                    {
                        "commit_id": e.commit_id,
                        "rmse": e.rmse,
                        "mean_rmse": e.mean_rmse,
                        "mae": e.mae,
                        "r2": e.r2,
                    }
                    for e in evaluations_of(settings, str(mv.version), client=client)
                ],
            }
        )
    return rows
