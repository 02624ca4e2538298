"""What every command shares: the settings in force, one-line errors instead of tracebacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pawpaw.config import Settings

__all__ = ["current_settings", "fail", "model_errors", "one_line"]


def current_settings() -> Settings:
    """The settings, pointed at the running local stack's MLflow server and drift store when
    `pawpaw up` has started one (explicit ``PAWPAW_*`` settings win); without a stack, the
    same stores are read directly (SQLite files under the data dir)."""
    from pawpaw.config import get_settings
    from pawpaw.stack import running_overrides

    settings = get_settings()
    overrides = running_overrides(settings)
    return settings.model_copy(update=overrides) if overrides else settings


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error (no traceback) and return the Exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def model_errors() -> tuple[type[Exception], ...]:
    """The errors of the model commands that deserve one line, not a traceback."""
    from mlflow.exceptions import MlflowException

    from pawpaw.evaluation import EvaluationError
    from pawpaw.registry import RegistryError
    from pawpaw.train import TrainingError
    from pawpaw.versioning import VersioningError

    return (TrainingError, EvaluationError, RegistryError, VersioningError, MlflowException)


def one_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
