"""`pawpaw`: the command line over the library. Each lifecycle stage is one command.

Commands live by area (:mod:`.data`, :mod:`.model`, :mod:`.ops`, :mod:`.stack`) and are
gathered here into one flat ``pawpaw`` app. Heavy imports (torch, mlflow, pandas, ...) happen
inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import typer

from pawpaw.cli import data, model, ops, stack

__all__ = ["app"]

app = typer.Typer(
    name="pawpaw",
    help="Pawpularity MLOps: synthesize/validate data, version samples in lakeFS, "
    "train/evaluate/promote models in MLflow, measure drift, serve with BentoML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
for _area in (data, model, ops, stack):  # in pipeline order, as `pawpaw --help` lists them
    app.registered_commands.extend(_area.app.registered_commands)
    app.registered_groups.extend(_area.app.registered_groups)
