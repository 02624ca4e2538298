"""What every command shares: one-line errors instead of tracebacks."""

from __future__ import annotations

import typer

__all__ = ["fail", "model_errors", "one_line"]


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
