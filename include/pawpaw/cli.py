"""`pawpaw`: the command line over the library. Each lifecycle stage is one command.

Heavy imports (torch, mlflow, pandas, ...) happen inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import subprocess

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

# --- synth / validate: the data (pawpaw.synth, pawpaw.data.kaggle) ------------------------------


def _echo_data_summary(summary: dict) -> None:
    """Rows, flag shares and score statistics, as ``pawpaw.data.kaggle.summarize`` gives them."""
    typer.echo(f"rows             {summary['rows']}")
    shares = [f"{f}={share:.3f}" for f, share in summary["flag_shares"].items()]
    typer.echo("flag shares      " + "  ".join(shares[:6]))
    typer.echo("                 " + "  ".join(shares[6:]))
    s = summary["score"]
    if s:
        typer.echo(
            f"Pawpularity      mean {s['mean']:.2f}  std {s['std']:.2f}  min {s['min']:g}  "
            f"q25/50/75 {s['q25']:g}/{s['median']:g}/{s['q75']:g}  p95 {s['p95']:g}  "
            f"max {s['max']:g}  at 100 {100 * s['share_100']:.1f}%"
        )


@app.command("synth")
def synth_command(
    out: str = typer.Argument(..., help="Folder to write (absent or empty)."),
    n: int = typer.Option(2000, "--n", min=1, help="Rows, one image each."),
    seed: int = typer.Option(0, "--seed", min=0, help="Same seed, same bytes."),
    shift: list[str] = typer.Option(
        [],
        "--shift",
        help="NAME=VALUE, repeatable: a flag's share (Blur=0.5, 'Subject Focus=0.1') or "
        "appeal=-1 (latent appeal moved by that many std; lowers scores).",
    ),
    size: tuple[int, int] = typer.Option(
        (224, 512), "--size", help="Smallest and largest image side in pixels."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Processes (default: all cores)."
    ),
) -> None:
    """Generate a synthetic pool (Kaggle format) whose score is driven by what is visible."""
    import json
    from pathlib import Path

    from pawpaw import synth

    try:
        parsed = synth.Shift.parse(shift)
        folder = synth.generate(
            Path(out), n, seed, parsed, size_range=size, workers=workers, progress=True
        )
    except (ValueError, FileExistsError) as exc:
        raise fail(str(exc)) from None
    doc = json.loads((folder / "synth.json").read_text())
    typer.echo(f"pool             {folder}")
    _echo_data_summary(doc["realized"])
    typer.echo(
        f"noise floor      {doc['noise_floor']:.3f} RMSE (noise sigma {doc['noise_sigma']:g}; "
        "the best any model can do on these rows)"
    )


@app.command("validate")
def validate_command(
    path: str = typer.Argument(..., help="Folder, .zip, or the CSV itself."),
    images: bool = typer.Option(True, "--images/--no-images", help="Also decode every image."),
) -> None:
    """Check a Kaggle-format data set (train.csv or data.csv + train/<Id>.jpg) and summarize it."""
    from pathlib import Path

    from pawpaw.data import kaggle

    try:
        data = kaggle.read_dataset(Path(path), check_images=images)
    except kaggle.DataError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"data set         {data.source}  (valid{'' if images else ', images unchecked'})")
    _echo_data_summary(kaggle.summarize(data))


# --- lakefs-emulator: the lakeFS-API emulator for development (lakefs_emulator) ----


@app.command("lakefs-emulator")
def lakefs_emulator_command(
    host: str | None = typer.Option(None, "--host", help="Default: lakefs_endpoint's host."),
    port: int | None = typer.Option(None, "--port", help="Default: lakefs_endpoint's port."),
    data: str | None = typer.Option(None, "--data", help="State dir. Default: data_dir/lakefs."),
) -> None:
    """Serve the lakeFS-API EMULATOR (not lakeFS) at what the settings point at; Ctrl-C stops."""
    import sqlite3
    from pathlib import Path
    from urllib.parse import urlsplit

    from lakefs_emulator import serve

    from pawpaw.config import get_settings

    settings = get_settings()
    url = urlsplit(settings.lakefs_endpoint)
    host = host or url.hostname or "127.0.0.1"
    port = port if port is not None else (url.port or 8000)
    data_dir = Path(data).expanduser().resolve() if data else settings.data_dir / "lakefs"
    typer.echo(f"lakeFS emulator on http://{host}:{port}/api/v1, state in {data_dir}", err=True)
    try:
        serve(
            data_dir,
            host,
            port,
            settings.lakefs_access_key_id,
            settings.lakefs_secret_access_key.get_secret_value(),
        )
    except (OSError, sqlite3.Error) as exc:
        raise fail(f"cannot serve on {host}:{port} with state in {data_dir}: {exc}") from None


# --- sample / commits / diff: monthly samples versioned in lakeFS (pawpaw.versioning) ------


def _parse_bias(items: list[str]) -> dict[str, float]:
    bias: dict[str, float] = {}
    for item in items:
        flag, sep, share = item.rpartition("=")
        try:
            if not sep:
                raise ValueError
            bias[flag.strip()] = float(share)
        except ValueError:
            raise fail(f"--bias {item!r}: expected FLAG=SHARE, e.g. --bias Blur=0.3") from None
    return bias


@app.command("sample")
def sample_command(
    pool: str = typer.Option(..., "--pool", help="Kaggle-format folder (train.csv + train/)."),
    n: int | None = typer.Option(None, "--n", help="Rows to draw [default: settings]."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the draw."),
    bias: list[str] = typer.Option([], "--bias", help="FLAG=SHARE, repeatable."),
    key: str | None = typer.Option(
        None, "--key", help="Sample identity [default: from pool, n, seed, bias]."
    ),
    val: float | None = typer.Option(None, "--val", help="Validation fraction [settings]."),
    test: float | None = typer.Option(None, "--test", help="Test fraction [settings]."),
) -> None:
    """Draw a sample from a pool and commit it to lakeFS; prints the commit id last."""
    from pathlib import Path

    from pawpaw import versioning
    from pawpaw.config import get_settings
    from pawpaw.data import kaggle
    from pawpaw.data.sampling import SampleError, SampleSpec, sample_key

    settings = get_settings()
    pool_dir = Path(pool).expanduser().resolve()
    try:
        spec = SampleSpec(
            n=settings.sample_size if n is None else n,
            seed=seed,
            val_fraction=settings.val_fraction if val is None else val,
            test_fraction=settings.test_fraction if test is None else test,
            bias=_parse_bias(bias),
        )
        data = kaggle.read_dataset(pool_dir)
        key = key or sample_key(pool_dir, spec)  # same pool + spec: the same commit on a rerun
        result = versioning.commit_sample(settings, data, spec, key=key, progress=True)
    except (SampleError, kaggle.DataError, versioning.VersioningError) as exc:
        raise fail(str(exc)) from None
    state = "created" if result.created else "already existed"
    typer.echo(f"sample {key!r} {state}: {result.sizes}", err=True)
    typer.echo(result.commit_id)


@app.command("commits")
def commits_command(
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many commits."),
    all_commits: bool = typer.Option(False, "--all", help="Also commits that are not samples."),
) -> None:
    """The sample commits on main, newest first."""
    import json

    from rich.console import Console
    from rich.table import Table

    from pawpaw import versioning
    from pawpaw.config import get_settings

    try:
        commits = versioning.list_commits(get_settings(), limit=limit, samples_only=not all_commits)
    except versioning.VersioningError as exc:
        raise fail(str(exc)) from None
    table = Table("id", "date (UTC)", "message", "key", "n", "bias")
    for c in commits:
        bias = json.loads(c.metadata.get("bias", "{}") or "{}")
        table.add_row(
            c.id[:12],
            c.created.strftime("%Y-%m-%d %H:%M:%S"),
            c.message,
            c.metadata.get("key", ""),
            c.metadata.get("n", ""),
            ", ".join(f"{f}={s:g}" for f, s in bias.items()),
        )
    Console(width=200).print(table)


@app.command("diff")
def diff_command(
    a: str = typer.Argument(..., help="From this commit (or ref)."),
    b: str = typer.Argument(..., help="To this commit (or ref)."),
    limit: int = typer.Option(100, "--limit", min=0, help="List at most this many entries."),
) -> None:
    """What changed between two commits: counts per prefix, then the entries."""
    from rich.console import Console
    from rich.table import Table

    from pawpaw import versioning
    from pawpaw.config import get_settings

    try:
        entries = versioning.diff_commits(get_settings(), a, b)
    except versioning.VersioningError as exc:
        raise fail(str(exc)) from None
    console = Console(width=200)
    table = Table("prefix", "added", "removed", "changed")
    for prefix, counts in versioning.summarize_diff(entries).items():
        table.add_row(prefix, *(str(counts[t]) for t in ("added", "removed", "changed")))
    console.print(table)
    for e in entries[:limit]:
        console.print(f"{e.type:8} {e.path}", highlight=False)
    if len(entries) > limit:
        console.print(f"... and {len(entries) - limit} more (--limit)", highlight=False)


# --- backbone: the frozen image backbone as ONNX (pawpaw.model.backbone, .embed) -----------


@app.command("backbone")
def backbone_command(
    weights: str = typer.Option(
        None, help="package | hub | none (default: PAWPAW_BACKBONE_WEIGHTS)."
    ),
) -> None:
    """Export the configured backbone to ONNX once (reused after) and print its id and path."""
    from pawpaw.config import get_settings
    from pawpaw.model.embed import Embedder

    settings = get_settings()
    try:
        embedder = Embedder.from_settings(settings, weights=weights)
    except (ValueError, RuntimeError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"backbone_id: {embedder.backbone_id}")
    typer.echo(f"onnx: {embedder.onnx_path}")
    typer.echo(f"dim: {embedder.dim}  input: {embedder.preprocess_config.input_size}")


# --- train / evaluate / promote / rollback / models: MLflow (pawpaw.train, .evaluation, .registry)


def _model_errors() -> tuple[type[Exception], ...]:
    """The errors of the model commands that deserve one line, not a traceback."""
    from mlflow.exceptions import MlflowException

    from pawpaw.evaluation import EvaluationError
    from pawpaw.registry import RegistryError
    from pawpaw.train import TrainingError
    from pawpaw.versioning import VersioningError

    return (TrainingError, EvaluationError, RegistryError, VersioningError, MlflowException)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
    from pawpaw.config import get_settings
    from pawpaw.model.heads import HEAD_KINDS
    from pawpaw.train import train

    settings = get_settings()
    mode = mode or settings.train_mode
    errors = _model_errors()
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
        raise fail(_one_line(exc)) from None
    typer.echo(result.version)


@app.command("evaluate")
def evaluate_command(
    commit: str = typer.Option(..., "--commit", help="lakeFS commit id whose test split to use."),
    version: str | None = typer.Option(None, "--version", help="Model version [champion]."),
) -> None:
    """RMSE, MAE, R^2 and the mean-predictor RMSE on a commit's test split (stored once)."""
    from pawpaw.config import get_settings
    from pawpaw.evaluation import evaluate

    settings = get_settings()
    try:
        result = evaluate(settings, commit, version=version)
    except _model_errors() as exc:
        raise fail(_one_line(exc)) from None
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
    from pawpaw.config import get_settings

    settings = get_settings()
    try:
        version = version or registry.alias_version(settings, registry.CHALLENGER)
        if version is None:
            raise fail(f"model {settings.registered_model!r} has no challenger: pass --version")
        if force:
            decision = registry.Decision(True, "forced")
        else:
            decision = registry.compare_with_champion(settings, version)
        if not decision:
            raise fail(f"v{version} not promoted: {decision.reason}")
        previous = registry.alias_version(settings, registry.CHAMPION)
        registry.promote(settings, version)
    except _model_errors() as exc:
        raise fail(_one_line(exc)) from None
    was = f" (previous champion: v{previous})" if previous and previous != version else ""
    typer.echo(f"v{version} is champion{was}: {decision.reason}")


@app.command("rollback")
def rollback_command() -> None:
    """Swap the champion back to the previous champion."""
    from pawpaw import registry
    from pawpaw.config import get_settings

    settings = get_settings()
    try:
        restored = registry.rollback(settings)
        previous = registry.alias_version(settings, registry.PREVIOUS)
    except _model_errors() as exc:
        raise fail(_one_line(exc)) from None
    after = f" (previous: v{previous})" if previous else ""
    typer.echo(f"v{restored} is champion again{after}")


@app.command("models")
def models_command() -> None:
    """Registered versions with their aliases, training facts and latest evaluation."""
    from rich.console import Console
    from rich.table import Table

    from pawpaw import registry
    from pawpaw.config import get_settings

    settings = get_settings()
    try:
        rows = registry.describe_models(settings)
    except _model_errors() as exc:
        raise fail(_one_line(exc)) from None
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


# --- export / serve: the champion as a BentoML model + bento, served (pawpaw.export) -------


@app.command("export")
def export_command(
    build: bool = typer.Option(True, "--build/--no-build", help="Also build the bento."),
) -> None:
    """Import the MLflow champion into BentoML and build its bento (reused when unchanged)."""
    from pawpaw import export
    from pawpaw.config import get_settings

    try:
        result = export.export_champion(get_settings(), build=build)
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
    from pawpaw.config import get_settings

    settings = get_settings()
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


@app.command("drift")
def drift_command(
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Show the latest N runs."),
) -> None:
    """Print the drift runs (one per analysis commit, reference commit and model version)."""
    import sqlalchemy as sa
    from rich.console import Console
    from rich.table import Table

    from pawpaw.config import get_settings
    from pawpaw.drift import read_drift_runs

    settings = get_settings()
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
    for name in ("time", "analysis", "reference", "model", "rows", "alerts", "RMSE", "drifted"):
        table.add_column(name, justify="right" if name in ("rows", "alerts") else "left")
    for run in runs.tail(limit).itertuples(index=False):
        table.add_row(
            f"{run.timestamp:%Y-%m-%d %H:%M}",
            run.analysis_commit[:12],
            run.reference_commit[:12],
            run.model_version,
            f"{run.n_reference} / {run.n_analysis}",
            str(run.n_alerts),
            f"{run.rmse_reference:.2f} -> {run.rmse_analysis:.2f}",
            run.drifted_columns.replace(",", ", ") or "-",
        )
    console.print(table)


# --- demo: the embedded quick start, end to end (pawpaw.demo) -------------------------------


@app.command("demo")
def demo_command(
    pool_size: int = typer.Option(4000, min=100, help="Photos in the synthetic pool."),
    sample_size: int = typer.Option(
        2000, min=120, help="Photos drawn each month (drift needs 30+ test rows)."
    ),
    serve: bool = typer.Option(True, help="Serve the champion with `bentoml serve` at the end."),
    keep_running: bool = typer.Option(
        True, help="Keep the services up until Ctrl-C (--no-keep-running: stop after the check)."
    ),
    airflow_ui: bool = typer.Option(True, help="Start the Airflow API server (UI) too."),
    port: int = typer.Option(3000, help="Port of the BentoML service."),
) -> None:
    """Synthetic pool -> local services -> the monthly DAG for two months -> serve the champion."""
    from pawpaw.config import get_settings
    from pawpaw.demo import DemoOptions, run_demo
    from pawpaw.services import ServiceError

    opts = DemoOptions(
        pool_size=pool_size,
        sample_size=sample_size,
        serve=serve,
        serve_port=port,
        airflow_ui=airflow_ui,
        keep_running=keep_running,
    )
    try:
        run_demo(get_settings(), opts)
    except ServiceError as exc:
        raise fail(str(exc)) from None
    except subprocess.CalledProcessError as exc:
        raise fail(
            f"`{' '.join(map(str, exc.cmd[:4]))} ...` exited with {exc.returncode}"
        ) from None


if __name__ == "__main__":  # pragma: no cover
    app()
