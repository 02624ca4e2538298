"""MLflow plumbing: the one client factory, experiments, and runs that clean up after failure.

Every MLflow call in the library goes through a client built from ``settings`` by
:func:`mlflow_client`: no process-global tracking URI is ever set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from pawpaw.config import Settings

__all__ = [
    "COMMIT_TAG",
    "HEAD_TAG",
    "MODE_TAG",
    "ensure_experiment",
    "guarded_run",
    "is_missing",
    "mlflow_client",
]

# Tags that one module writes and another reads. The lakeFS commit a training run, a model
# version or an evaluation run belongs to; a version's training mode and head.
COMMIT_TAG = "pawpaw.commit_id"
MODE_TAG = "pawpaw.mode"
HEAD_TAG = "pawpaw.head"


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


_MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def is_missing(exc: Exception) -> bool:
    """True when an MLflow error says the thing asked for does not exist (not an outage)."""
    return getattr(exc, "error_code", None) in _MISSING
