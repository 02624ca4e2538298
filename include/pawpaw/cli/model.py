"""Commands for the model: backbone, train, evaluate, promote, rollback, models."""

from __future__ import annotations

import typer

from pawpaw.cli.common import fail, model_errors, one_line

app = typer.Typer()


# --- backbone: the frozen image backbone as ONNX (pawpaw.model.backbone, .embed) -----------


@app.command("backbone")
def backbone_command(
    weights: str = typer.Option(
        None, help="package | hub | none (default: PAWPAW_BACKBONE_WEIGHTS)."
    ),
) -> None:
    """Export the configured backbone to ONNX once (reused after) and print its id and path."""
    from pawpaw.cli.common import current_settings
    from pawpaw.model.embed import Embedder

    settings = current_settings()
    try:
        embedder = Embedder.from_settings(settings, weights=weights)
    except (ValueError, RuntimeError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"backbone_id: {embedder.backbone_id}")
    typer.echo(f"onnx: {embedder.onnx_path}")
    typer.echo(f"dim: {embedder.dim}  input: {embedder.preprocess_config.input_size}")


# --- train / evaluate / promote / rollback / models: MLflow (pawpaw.train, .evaluation, .registry)


@app.command("train")
def train_command(
    commit: str = typer.Option(..., "--commit", help="lakeFS commit id of the sample."),
    mode: str | None = typer.Option(
        None, "--mode", help="head (CPU, seconds) or finetune (GPU) [default: settings]."
    ),
    head: list[str] = typer.Option(
        [], "--head", help="Only these head kinds (ridge, svr, mlp); repeatable [default: all]."
    ),
) -> None:
    """Train a challenger on a commit and register it; the first model becomes champion."""
    from pawpaw import registry
    from pawpaw.cli.common import current_settings
    from pawpaw.model.heads import HEAD_KINDS
    from pawpaw.train import train

    settings = current_settings()
    mode = mode or settings.train_mode
    errors = model_errors()
    try:
        result = train(settings, commit, mode=mode, head_kinds=tuple(head) or HEAD_KINDS)
        typer.echo(
            f"{settings.registered_model} v{result.version}: {result.head}, "
            f"val RMSE {result.val_rmse:.3f}, {result.train_seconds:.1f}s"
            + (" (reused)" if result.reused else ""),
            err=True,
        )
        if registry.alias_version(settings, registry.CHAMPION) is None:
            registry.promote(settings, result.version)
            typer.echo(f"no champion yet: v{result.version} promoted to champion", err=True)
    except errors as exc:
        raise fail(one_line(exc)) from None
    typer.echo(result.version)


@app.command("evaluate")
def evaluate_command(
    commit: str = typer.Option(..., "--commit", help="lakeFS commit id whose test split to use."),
    version: str | None = typer.Option(None, "--version", help="Model version [champion]."),
) -> None:
    """RMSE, MAE, R^2 and the mean-predictor RMSE on a commit's test split (stored once)."""
    from pawpaw.cli.common import current_settings
    from pawpaw.evaluation import evaluate

    settings = current_settings()
    try:
        result = evaluate(settings, commit, version=version)
    except model_errors() as exc:
        raise fail(one_line(exc)) from None
    if result is None:
        raise fail(f"model {settings.registered_model!r} has no champion: pass --version")
    typer.echo(f"version          {result.version}")
    typer.echo(f"commit           {result.commit_id}")
    typer.echo(f"test images      {result.n_test}")
    typer.echo(f"RMSE             {result.rmse:.3f}")
    typer.echo(f"MAE              {result.mae:.3f}")
    typer.echo(f"R^2              {result.r2:.3f}")
    typer.echo(f"mean predictor   {result.mean_rmse:.3f}  (RMSE ratio {result.ratio:.3f})")
    if result.noise_floor is not None:
        typer.echo(f"noise floor      {result.noise_floor:.3f}  (synthetic data: best possible)")


@app.command("promote")
def promote_command(
    version: str | None = typer.Option(None, "--version", help="Version [the challenger]."),
    force: bool = typer.Option(False, "--force", help="Promote without comparing."),
) -> None:
    """Make a version champion if it beats the champion on its training commit's test split."""
    from pawpaw import registry
    from pawpaw.cli.common import current_settings
    from pawpaw.decisions import Decision, should_promote
    from pawpaw.evaluation import head_to_head

    settings = current_settings()
    try:
        version = version or registry.alias_version(settings, registry.CHALLENGER)
        if version is None:
            raise fail(f"model {settings.registered_model!r} has no challenger: pass --version")
        if force:
            decision = Decision(True, "forced")
        else:
            decision = should_promote(*head_to_head(settings, version))
        if not decision:
            raise fail(f"v{version} not promoted: {decision.reason}")
        previous = registry.alias_version(settings, registry.CHAMPION)
        registry.promote(settings, version)
    except model_errors() as exc:
        raise fail(one_line(exc)) from None
    was = f" (previous champion: v{previous})" if previous and previous != version else ""
    typer.echo(f"v{version} is champion{was}: {decision.reason}")


@app.command("rollback")
def rollback_command() -> None:
    """Swap the champion back to the previous champion."""
    from pawpaw import registry
    from pawpaw.cli.common import current_settings

    settings = current_settings()
    try:
        restored = registry.rollback(settings)
        previous = registry.alias_version(settings, registry.PREVIOUS)
    except model_errors() as exc:
        raise fail(one_line(exc)) from None
    after = f" (previous: v{previous})" if previous else ""
    typer.echo(f"v{restored} is champion again{after}")


@app.command("models")
def models_command() -> None:
    """Registered versions with their aliases, training facts and latest evaluation."""
    from rich.console import Console
    from rich.table import Table

    from pawpaw.cli.common import current_settings
    from pawpaw.evaluation import describe_models

    settings = current_settings()
    try:
        rows = describe_models(settings)
    except model_errors() as exc:
        raise fail(one_line(exc)) from None
    table = Table(
        "version",
        "aliases",
        "mode",
        "head",
        "trained on",
        "val RMSE",
        "test RMSE (mean)",
        "evaluated on",
        "created (UTC)",
        title=f"{settings.registered_model} @ {settings.tracking_uri}",
    )
    for row in rows:
        last = row["evaluations"][0] if row["evaluations"] else None
        table.add_row(
            row["version"],
            ", ".join(row["aliases"]),
            row["mode"] or "",
            row["head"] or "",
            (row["commit_id"] or "")[:12],
            f"{row['val_rmse']:.3f}" if row["val_rmse"] is not None else "",
            f"{last['rmse']:.3f} ({last['mean_rmse']:.3f})" if last else "",
            last["commit_id"][:12] if last else "",
            row["created"],
        )
    Console(width=200).print(table)
    if not rows:
        typer.echo("no registered versions yet: run `pawpaw train --commit <id>`", err=True)
