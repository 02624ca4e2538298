"""Commands for the data: synthesize, validate, the lakeFS emulator, sample, commits, diff."""

from __future__ import annotations

import typer

from pawpaw.cli.common import fail

app = typer.Typer()


# --- synth / validate: the data (pawpaw.synth, pawpaw.data.kaggle) ------------------------


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
    doc = json.loads((folder / synth.SYNTH_FILE).read_text())
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

    try:
        from lakefs_emulator import serve
    except ModuleNotFoundError:
        raise fail(
            "the lakeFS-API emulator is development tooling (include/lakefs_emulator), not part "
            "of the pawpaw package: run it from a development install of the project "
            "(`make setup`), or point PAWPAW_LAKEFS_ENDPOINT at a real lakeFS"
        ) from None

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
    from pawpaw.cli.common import current_settings
    from pawpaw.data import kaggle
    from pawpaw.data.sampling import SampleError, SampleSpec, sample_key

    settings = current_settings()
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
    from pawpaw.cli.common import current_settings

    try:
        commits = versioning.list_commits(
            current_settings(), limit=limit, samples_only=not all_commits
        )
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
    from pawpaw.cli.common import current_settings

    try:
        entries = versioning.diff_commits(current_settings(), a, b)
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
