"""Commands for operating: export, serve, drift, demo."""

from __future__ import annotations

import typer

from pawpaw.cli.common import fail
from pawpaw.schema import MIN_SAMPLE_SIZE

app = typer.Typer()


# --- export / serve: the champion as a BentoML model + bento, served (pawpaw.export) -------


@app.command("export")
def export_command(
    build: bool = typer.Option(True, "--build/--no-build", help="Also build the bento."),
) -> None:
    """Import the MLflow champion into BentoML and build its bento (reused when unchanged)."""
    from pawpaw import export
    from pawpaw.cli.common import current_settings

    try:
        result = export.export_champion(current_settings(), build=build)
    except export.ExportError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"version: {result.version}")
    typer.echo(f"model:   {result.model_tag}")
    if result.bento_tag is not None:
        typer.echo(f"bento:   {result.bento_tag}")


@app.command("serve")
def serve_command(
    port: int = typer.Option(3000, "--port", min=1, max=65535),
    host: str = typer.Option("127.0.0.1", "--host"),
    bento: str | None = typer.Option(
        None, "--bento", help="Serve this bento tag as is; default: export the champion first."
    ),
) -> None:
    """Serve the champion's bento with `bentoml serve` (API, page at /); Ctrl-C stops."""
    import os
    import sys

    from pawpaw import export
    from pawpaw.cli.common import current_settings

    settings = current_settings()
    if bento is None:
        try:
            bento = export.export_champion(settings).bento_tag
        except export.ExportError as exc:
            raise fail(str(exc)) from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}"
    typer.echo(f"serving {bento}")
    typer.echo(f"page: {url}/   API: {url}/predict, {url}/advise   health: {url}/readyz")
    cmd = [sys.executable, "-m", "bentoml", "serve", bento, "--host", host, "--port", str(port)]
    sys.stdout.flush()
    # exec: bentoml becomes this process, so signals (Ctrl-C, SIGTERM) reach it directly.
    os.execve(sys.executable, cmd, {**os.environ, **export.bento_env(settings)})


# --- drift: the drift runs stored by the pipeline's drift step (pawpaw.drift) ---------------


drift_app = typer.Typer(
    invoke_without_command=True,
    help="Drift runs: list them (no subcommand) or measure a month (`measure`).",
)
app.add_typer(drift_app, name="drift")


@drift_app.callback()
def drift_command(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Show the latest N runs."),
) -> None:
    """Print the drift runs (one per month, reference and model version), or run a subcommand."""
    if ctx.invoked_subcommand is not None:
        return
    import sqlalchemy as sa
    from rich.console import Console
    from rich.table import Table

    from pawpaw.cli.common import current_settings
    from pawpaw.drift import read_drift_runs

    settings = current_settings()
    where = sa.engine.make_url(settings.drift_db_url).render_as_string(hide_password=True)
    try:
        runs = read_drift_runs(settings)
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise fail(f"cannot read drift runs from {where}: {reason}") from None
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=200)
    if runs.empty:
        console.print(f"no drift runs in {where}", highlight=False)
        return
    table = Table(title=f"drift runs ({len(runs)} in {where})")
    for name in ("month", "analysis", "reference", "model", "rows", "verdict", "RMSE est/real"):
        table.add_column(name, justify="right" if name == "rows" else "left")
    for run in runs.tail(limit).itertuples(index=False):
        table.add_row(
            f"{run.month:%Y-%m}",
            run.analysis_commit[:12],
            run.reference_commit[:12],
            run.model_version,
            f"{run.n_reference} / {run.n_analysis}",
            f"ALERT: {run.reasons}" if run.alert else "calm",
            f"{run.estimated_rmse:.2f} / {run.rmse_analysis:.2f}",
        )
    console.print(table)


def _stored_month(settings, commit_id: str) -> str | None:
    """The month a stored drift run of ``commit_id`` put it on (a re-measure keeps it)."""
    from pawpaw.drift import read_drift_runs

    months = read_drift_runs(settings, commit_id).month
    return f"{months.iloc[0]:%Y-%m}" if len(months) else None


@drift_app.command("measure")
def drift_measure_command(
    commit: str = typer.Option(..., "--commit", help="The month's sample commit (lakeFS)."),
    reference: str | None = typer.Option(
        None,
        "--reference",
        help="Reference commit (default: the commit the champion was trained on).",
    ),
    month: str | None = typer.Option(
        None,
        "--month",
        help="YYYY-MM on the time axis (default: as stored, else the month of the commit).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Measure one month with the champion (stored; a rerun replaces its rows) and print the
    verdict: alert, reasons, estimated and realized RMSE, every month-level test."""
    import json

    from pawpaw import evaluation, pipeline, versioning
    from pawpaw.cli.common import current_settings, model_errors, one_line
    from pawpaw.drift import DriftError

    settings = current_settings()
    try:
        champion = evaluation.evaluate(settings, commit, progress=not as_json)
        if champion is None:
            raise fail(f"model {settings.registered_model!r} has no champion: nothing measured")
        when = month or _stored_month(settings, champion.commit_id)
        when = when or f"{versioning.commit_time(settings, champion.commit_id):%Y-%m}"
        result = pipeline.drift(
            settings,
            champion.commit_id,
            {"evaluation": champion.to_dict()},
            month=when,
            threshold_ratio=settings.retrain_threshold_ratio,
            reference_commit=reference,
        )
    except (*model_errors(), DriftError, ValueError) as exc:
        raise fail(one_line(exc)) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"month {result['month']}, model v{result['model_version']}: "
        + (f"ALERT: {'; '.join(result['reasons'])}" if result["alert"] else "no alert")
    )
    typer.echo(
        f"RMSE estimated {result['estimated_rmse']:.2f}, realized "
        f"{result['rmse_analysis']:.2f} ({result['estimate_error']:.0%} apart), "
        f"reference {result['rmse_reference']:.2f}, retrain limit {result['rmse_limit']:.2f}"
    )
    for test in sorted(result["tests"], key=lambda t: t["p_value"]):
        mark = "ALERT" if test["alert"] else ""
        typer.echo(
            f"  {test['column']:>16s} {test['method']:>19s} {test['statistic']:9.4g} "
            f"p={test['p_value']:.3g} (level {test['alpha']:.3g}) {mark}"
        )


# --- demo: the embedded quick start, end to end (pawpaw.demo) -------------------------------


@app.command("demo")
def demo_command(
    pool_size: int = typer.Option(4000, min=100, help="Photos in the synthetic pool."),
    sample_size: int | None = typer.Option(
        None,
        min=MIN_SAMPLE_SIZE,
        help="Photos drawn each month (drift needs 30+ test rows) [default: settings].",
    ),
    serve: bool = typer.Option(True, help="Serve the champion with `bentoml serve` at the end."),
    keep_running: bool = typer.Option(
        True, help="Leave the stack running afterwards (`pawpaw down` stops it)."
    ),
) -> None:
    """Synthetic pools -> the local stack -> two months run by Airflow's scheduler -> serve."""
    from pawpaw import stack
    from pawpaw.config import get_settings
    from pawpaw.demo import DemoError, DemoOptions, run_demo
    from pawpaw.stack.runs import RunError

    settings = get_settings()
    opts = DemoOptions(
        sample_size=sample_size or settings.sample_size,
        pool_size=pool_size,
        serve=serve,
        keep_running=keep_running,
    )
    try:
        run_demo(settings, opts)
    except (stack.StackError, RunError, DemoError) as exc:
        raise fail(
            f"{exc}\n(the stack is left running for a look; `pawpaw down` stops it)"
        ) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


if __name__ == "__main__":  # pragma: no cover
    app()
