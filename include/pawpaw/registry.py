"""The MLflow model registry's aliases: who serves, who waits, and what a rollback restores.

Aliases on the registered model ``settings.registered_model``:

- ``champion``: the version that serves;
- ``challenger``: the newest trained version, waiting for its comparison;
- ``previous``: the champion before the last promotion (what :func:`rollback` restores).

Whether to promote is decided in :mod:`pawpaw.decisions`; this module only moves aliases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pawpaw.tracking import COMMIT_TAG, is_missing, mlflow_client

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from pawpaw.config import Settings

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PREVIOUS",
    "RegistryError",
    "alias_version",
    "check_version",
    "promote",
    "rollback",
    "set_alias",
    "training_commit",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (unknown version, nothing to roll back to)."""


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


def check_version(settings: Settings, version: str, client: MlflowClient) -> str:
    """``version`` as the registry spells it; :class:`RegistryError` when it does not exist."""
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


def training_commit(settings: Settings, version: str) -> str:
    """The lakeFS commit a registered version was trained on (its ``pawpaw.commit_id`` tag)."""
    client = mlflow_client(settings)
    version = check_version(settings, version, client)
    commit = client.get_model_version(settings.registered_model, version).tags.get(COMMIT_TAG)
    if not commit:
        raise RegistryError(
            f"{settings.registered_model} v{version} has no {COMMIT_TAG} tag: "
            "it was not registered by pawpaw training"
        )
    return commit


def promote(settings: Settings, version: str) -> None:
    """``version`` becomes champion; the old champion becomes ``previous``; a ``challenger``
    alias on ``version`` is dropped. Idempotent: promoting the champion changes nothing else."""
    client = mlflow_client(settings)
    version = check_version(settings, version, client)
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
