"""`pawpaw demo`: the embedded quick start, end to end on one machine without Docker.

1. generate a synthetic pool and a shifted one (once; reused afterwards);
2. start the local stack (:mod:`pawpaw.stack`: lakeFS emulator, MLflow, Airflow's API server,
   scheduler, DAG processor and triggerer);
3. trigger the monthly DAG for last month and this month through Airflow's REST API, as the
   UI's Trigger button does (this month from the shifted pool), unpause it, and follow both
   runs as the scheduler executes them, one line per task;
4. serve the champion's bento, send it one photo, print the score and every URL.

The stack keeps running afterwards (`pawpaw down` stops it); Ctrl-C, SIGTERM or SIGHUP during
the demo stop it at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pawpaw.config import Settings
from pawpaw.pipeline import default_pool
from pawpaw.progress import say
from pawpaw.stack.runs import AirflowAPI

__all__ = ["DAG_ID", "DemoError", "DemoOptions", "DemoResult", "last_two_months", "run_demo"]

DAG_ID = "pawpularity_monthly"
# This month comes from a shifted population: more blur, more humans, less appealing light.
SHIFT = ["Blur=0.4", "Human=0.4", "appeal=-0.5"]


class DemoError(RuntimeError):
    """A demo run did not succeed; the message says where to look."""


@dataclass
class DemoOptions:
    sample_size: int  # photos drawn each month (`pawpaw demo` passes settings.sample_size)
    pool_size: int = 4000
    serve: bool = True
    keep_running: bool = True  # False: stop the whole stack at the end
    months: tuple[date, date] = field(default_factory=lambda: last_two_months(date.today()))


@dataclass
class DemoResult:
    timings: dict[str, float] = field(default_factory=dict)  # seconds: synth, stack, month1, ...
    score: float | None = None  # the served champion's answer to one photo
    runs: dict[str, dict[str, str]] = field(default_factory=dict)  # run id -> task -> state


def last_two_months(today: date) -> tuple[date, date]:
    """Last month and this month: the 1st of this month is `@monthly`'s newest tick, the run
    the scheduler creates by itself once the DAG is unpaused (it finds ours and adds none)."""
    this = today.replace(day=1)
    prev = (this - timedelta(days=1)).replace(day=1)
    return prev, this


def _step(text: str) -> None:
    say(True, f"\n==> {text}")


def run_demo(settings: Settings, opts: DemoOptions) -> DemoResult:
    """Run the quick start; returns the seconds per phase, the task states and the score."""
    from pawpaw import stack

    started = time.monotonic()
    result = DemoResult()
    pool = default_pool(settings)
    shifted = pool.with_name("shifted")
    _step(f"1/4 synthetic pools: {pool} ({opts.pool_size}), {shifted} ({opts.sample_size}, "
          "shifted)")  # fmt: skip
    _synthesize(pool, opts.pool_size, seed=0, shift=[])
    _synthesize(shifted, opts.sample_size, seed=1, shift=SHIFT)
    result.timings["synth"] = time.monotonic() - started

    with stack.stopping_on_signals(settings):
        _step("2/4 the local stack (`pawpaw up`)")
        t0 = time.monotonic()
        served = settings.model_copy(update=stack.up(settings, bento=False))
        result.timings["stack"] = time.monotonic() - t0
        _run_months(settings, opts, (pool, shifted), result)
        _step("4/4 serve the champion with BentoML")
        if opts.serve:
            stack.up(served, bento=True)
            result.score = _score_one(settings, pool)
        _summary(settings, started)
        if not opts.keep_running:
            stack.down(settings)
    return result


def _run_months(
    settings: Settings, opts: DemoOptions, pools: tuple[Path, Path], result: DemoResult
) -> None:
    with AirflowAPI(f"http://127.0.0.1:{settings.airflow_port}") as api:
        _trigger_and_follow(api, settings, opts, pools, result)


def _trigger_and_follow(
    api: AirflowAPI,
    settings: Settings,
    opts: DemoOptions,
    pools: tuple[Path, Path],
    result: DemoResult,
) -> None:
    api.wait_for_dag(DAG_ID)
    now = datetime.now(UTC)
    run_ids = []
    for i, (month, pool) in enumerate(zip(opts.months, pools, strict=True)):
        run_id = f"demo__{month:%Y-%m}"
        logical = datetime(month.year, month.month, 1, tzinfo=UTC)
        conf = {"pool": str(pool), "sample_size": opts.sample_size}
        # run_after orders the queue: last month first (max_active_runs=1 runs one at a time).
        api.trigger(DAG_ID, run_id=run_id, logical_date=logical, conf=conf,
                    run_after=now + timedelta(seconds=i))  # fmt: skip
        run_ids.append(run_id)
    # Unpaused after the triggers: this month's run already exists, so the scheduler does not
    # add one of its own for the newest tick.
    api.set_paused(DAG_ID, False)
    for i, run_id in enumerate(run_ids, 1):
        _step(f"3/4 month {i}: {run_id} (scheduled by Airflow; logs in the UI)")
        t0 = time.monotonic()
        states: dict[str, str] = {}

        def show(task: dict[str, Any], states: dict[str, str] = states) -> None:
            states[task["task_id"]] = task["state"]
            duration = task.get("duration")
            took = f"{duration:6.1f}s" if duration is not None else "      -"
            say(True, f"  {task['task_id']:22s} {task['state']:16s} {took}")

        run = api.follow(DAG_ID, run_id, on_task=show)
        result.timings[f"month{i}"] = time.monotonic() - t0
        result.runs[run_id] = states
        if run["state"] != "success":
            failed = sorted(t for t, s in states.items() if s in {"failed", "upstream_failed"})
            raise DemoError(
                f"run {run_id} {run['state']} (tasks: {', '.join(failed) or '?'}); read their "
                f"logs at http://127.0.0.1:{settings.airflow_port}/dags/{DAG_ID}"
            )
        say(True, f"  month {i} took {result.timings[f'month{i}']:.0f}s")


def _synthesize(path: Path, n: int, *, seed: int, shift: list[str]) -> None:
    from pawpaw import synth

    if (path / "train.csv").exists():
        say(True, f"  reusing {path}")
        return
    synth.generate(path, n=n, seed=seed, shift=synth.Shift.parse(shift), progress=True)


def _score_one(settings: Settings, pool: Path) -> float:
    from pawpaw.export import request_score

    url = f"http://127.0.0.1:{settings.serve_port}"
    image = next(iter(sorted((pool / "train").glob("*.jpg"))))
    score = request_score(url, image.read_bytes())
    say(True, f"  POST {url}/predict with {image.name} -> Pawpularity {score:.1f}")
    return score


def _summary(settings: Settings, started: float) -> None:
    from pawpaw import stack

    _step(f"done in {time.monotonic() - started:.0f}s")
    for row in stack.status(settings):
        say(True, f"  {row.name:22s} {row.url}")
    say(True, f"  Airflow UI: http://127.0.0.1:{settings.airflow_port} (no login: everyone is "
              "admin in the embedded profile)")  # fmt: skip
    say(True, "  `pawpaw status` shows the stack, `pawpaw down` stops it")
