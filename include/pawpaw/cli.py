"""`pawpaw`: the command line over the library. Each lifecycle stage is one command.

Heavy imports (torch, mlflow, pandas, ...) happen inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(
    name="pawpaw",
    help="Pawpularity MLOps: synthesize/validate data, version samples in lakeFS, "
    "train/evaluate/promote models in MLflow, measure drift, serve with BentoML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error (no traceback) and return the Exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


# --- commands -----------------------------------------------------------------------------
# Each group below is owned by one stage; keep them in pipeline order.


if __name__ == "__main__":  # pragma: no cover
    app()
