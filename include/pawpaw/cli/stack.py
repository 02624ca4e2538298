"""Commands for the embedded stack: up, down, status."""

from __future__ import annotations

import typer

from pawpaw.cli.common import fail

app = typer.Typer()


@app.command("up")
def up_command(
    bento: bool = typer.Option(True, help="Also serve the champion's bento, when there is one."),
) -> None:
    """Start the local stack (lakeFS emulator, MLflow, Airflow's four components, the bento);
    what already runs is left alone. Ports: PAWPAW_MLFLOW_PORT, PAWPAW_AIRFLOW_PORT,
    PAWPAW_SERVE_PORT and PAWPAW_LAKEFS_ENDPOINT."""
    from pawpaw import stack
    from pawpaw.config import get_settings

    settings = get_settings()
    try:
        with stack.stopping_on_signals(settings):
            stack.up(settings, bento=bento)
    except stack.StackError as exc:
        raise fail(f"{exc}\n(`pawpaw down` stops what did start)") from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    _print_status(settings)
    typer.echo("Stop everything with `pawpaw down` (or `make down`).", err=True)


@app.command("down")
def down_command() -> None:
    """Stop every service of the local stack, servers and workers alike."""
    from pawpaw import stack
    from pawpaw.config import get_settings

    try:
        stopped = stack.down(get_settings())
    except stack.StackError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command("status")
def status_command() -> None:
    """Each service of the local stack: URL, pid, health."""
    from pawpaw.config import get_settings

    if not _print_status(get_settings()):
        typer.echo("the stack is not running: `pawpaw up` starts it")


def _print_status(settings) -> bool:
    from pawpaw import stack

    rows = stack.status(settings)
    for row in rows:
        health = "healthy" if row.healthy else ("starting/unhealthy" if row.alive else "stopped")
        typer.echo(f"{row.name:22s} {health:18s} pid {row.pid or '-':<7} {row.url}")
    return bool(rows)
