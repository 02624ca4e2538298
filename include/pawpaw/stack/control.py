"""Starting, stopping and inspecting the stack; its state file (``data_dir/stack.json``)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pawpaw.config import Settings
from pawpaw.progress import say
from pawpaw.stack.processes import (
    StackError,
    alive,
    port_in_use,
    port_owner,
    service_processes,
    stop_processes,
    tail,
    tool,
)
from pawpaw.stack.services import (
    SERVICES,
    TAG,
    ServiceSpec,
    champion_bento,
    is_healthy,
    monitoring_url,
    service_specs,
)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_deferred: list[int] = []  # stop signals that arrived while a process was being recorded
_deferring = False

__all__ = ["ServiceStatus", "down", "running_overrides", "status", "stopping_on_signals", "up"]


_STATE = "stack.json"


@dataclass
class ServiceStatus:
    """One service as :func:`status` sees it."""

    name: str
    url: str
    pid: int | None
    alive: bool
    healthy: bool
    log: str


def _state_path(settings: Settings) -> Path:
    return settings.data_dir / _STATE


def _load(settings: Settings) -> dict:
    path = _state_path(settings)
    if not path.is_file():
        return {"services": {}, "env": {}}
    return json.loads(path.read_text())


def _save(settings: Settings, state: dict) -> None:
    path = _state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    partial.replace(path)


@contextmanager
def _locked(settings: Settings) -> Iterator[Settings]:
    """One `up` or `down` at a time per data dir (they read, change and rewrite the state);
    yields the settings with an absolute data dir (services run with it as working dir)."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / f"{_STATE}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield settings.model_copy(update={"data_dir": data_dir})


def _running(record: dict | None) -> bool:
    return record is not None and alive(record.get("pid"), record["programs"])


def _healthy(record: dict) -> bool:
    return is_healthy(record["health"], record.get("health_key"))


def _wait_healthy(record: dict, timeout: float, process: subprocess.Popen | None = None) -> None:
    started = time.monotonic()
    while not _healthy(record):
        if process is not None and process.poll() is not None:
            raise StackError(f"{record['name']} exited with {process.returncode}:\n"
                             f"{tail(Path(record['log']))}")  # fmt: skip
        if time.monotonic() - started > timeout:
            raise StackError(f"{record['name']} not healthy after {timeout:.0f}s:\n"
                             f"{tail(Path(record['log']))}")  # fmt: skip
        time.sleep(0.5)


def _stop(record: dict, timeout: float) -> bool:
    """Stop every process of the service (rescanning: a supervisor may fork while it stops);
    True if there was any."""
    stopped = False
    for _ in range(3):
        procs = service_processes(record.get("pid"), record.get("pgids", []), record["programs"])
        if not procs:
            break
        stop_processes(procs, timeout)
        stopped = True
    return stopped


def _start(spec: ServiceSpec, settings: Settings, state: dict, progress: bool) -> None:
    if spec.port is not None and port_in_use(spec.port):
        raise StackError(
            f"{spec.name}: port {spec.port} is taken by {port_owner(spec.port)}; stop it, or "
            f"choose another port (see `pawpaw up --help`)"
        )
    log_path = settings.data_dir / "logs" / f"{spec.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # A stop signal between starting the process and recording it would leak the process.
    with _signals_deferred():
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                spec.cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "NML_DISABLE_USAGE_LOGGING": "1", **spec.env},
                cwd=settings.data_dir,
                start_new_session=True,  # its own process group: down() stops it with its children
            )
        previous = state["services"].get(spec.name) or {}
        record = state["services"][spec.name] = {
            "name": spec.name,
            "pid": process.pid,
            # Every group this service ever had: workers of a killed scheduler outlive it there.
            "pgids": sorted({*previous.get("pgids", []), process.pid}),
            "url": spec.url,
            "port": spec.port,
            "health": spec.health,
            "health_key": spec.health_key,
            "programs": list(spec.programs),
            "log": str(log_path),
        }
        _save(settings, state)
    started = time.monotonic()
    _wait_healthy(record, spec.timeout, process)
    say(progress, f"{spec.name:22s} {spec.url}  ({time.monotonic() - started:.0f}s)", tag=TAG)


def up(settings: Settings, *, bento: bool = True, progress: bool = True) -> dict[str, str]:
    """Start every service that is not running, in order; return the settings overrides that
    point the library at them (``mlflow_tracking_uri``, ``monitoring_db_url``).

    Running it again starts only what is missing (a crashed or killed service)."""
    with _locked(settings) as settings:
        return _up(settings, bento=bento, progress=progress)


def _up(settings: Settings, *, bento: bool, progress: bool) -> dict[str, str]:
    state = _load(settings)
    if not any(_running(r) for r in state["services"].values()):
        # Nothing runs: the stack is (re)made from the settings in force now.
        state["env"] = {
            "PAWPAW_DATA_DIR": str(settings.data_dir),
            "PAWPAW_LAKEFS_ENDPOINT": settings.lakefs_endpoint,
            "PAWPAW_MLFLOW_TRACKING_URI": f"http://127.0.0.1:{settings.mlflow_port}",
            "PAWPAW_MONITORING_DB_URL": monitoring_url(settings),
            "PAWPAW_REGISTERED_MODEL": settings.registered_model,
        }
        _save(settings, state)
    pawpaw_env = state["env"]
    served = settings.model_copy(update=_overrides(pawpaw_env))
    migrated = False
    for spec in service_specs(settings, pawpaw_env, bento_tag=None):
        record = state["services"].get(spec.name)
        if _running(record):
            try:
                _wait_healthy(record, spec.timeout)  # it may still be starting
                say(progress, f"{spec.name:22s} {spec.url}  (already running)", tag=TAG)
                continue
            except StackError:
                say(progress, f"{spec.name:22s} unhealthy: restarting it", tag=TAG)
                _stop(record, timeout=20.0)
        if spec.name.startswith("airflow") and not migrated:
            _airflow_migrate(spec.env, settings, progress)
            migrated = True
        _start(spec, settings, state, progress)
    if bento and not _running(state["services"].get("bento")):
        tag = champion_bento(served, progress)
        if tag is not None:
            (spec,) = (s for s in service_specs(settings, pawpaw_env, tag) if s.name == "bento")
            _start(spec, settings, state, progress)
    elif bento:
        url = state["services"]["bento"]["url"]
        say(progress, f"{'bento':22s} {url}  (already running)", tag=TAG)
    return _overrides(pawpaw_env)


def _airflow_migrate(env: dict[str, str], settings: Settings, progress: bool) -> None:
    say(progress, "airflow db migrate", tag=TAG)
    log_path = settings.data_dir / "logs" / "airflow-db-migrate.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        done = subprocess.run(
            [tool("airflow"), "db", "migrate"],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        raise StackError(f"airflow db migrate failed:\n{tail(log_path)}")


def _overrides(pawpaw_env: dict[str, str]) -> dict[str, str]:
    return {
        "mlflow_tracking_uri": pawpaw_env["PAWPAW_MLFLOW_TRACKING_URI"],
        "monitoring_db_url": pawpaw_env["PAWPAW_MONITORING_DB_URL"],
    }


def running_overrides(settings: Settings) -> dict[str, str]:
    """What a command should use while the stack is up ({} when it is not): the MLflow server
    instead of its SQLite file, and the stack's drift store. Explicit settings win."""
    state = _load(settings)
    if not state.get("env") or not _running(state["services"].get("mlflow")):
        return {}
    overrides = _overrides(state["env"])
    if settings.mlflow_tracking_uri:
        overrides.pop("mlflow_tracking_uri")
    if settings.monitoring_db_url:
        overrides.pop("monitoring_db_url")
    return overrides


def down(settings: Settings, *, progress: bool = True, timeout: float = 20.0) -> list[str]:
    """Stop every service of the stack (servers and all their workers), newest first; return
    the names stopped. Afterwards none of their processes remain and their ports are free."""
    with _locked(settings) as settings:
        state = _load(settings)
        ports = [r["port"] for r in state["services"].values() if r.get("port")]
        stopped = []
        for name in reversed(SERVICES):
            record = state["services"].get(name)
            if record is None:
                continue
            if _stop(record, timeout):
                stopped.append(name)
                say(progress, f"{name:22s} stopped", tag=TAG)
            del state["services"][name]
            _save(settings, state)
        state["env"] = {}
        _save(settings, state)
    busy = [f"{port} ({port_owner(port)})" for port in ports if port_in_use(port)]
    if busy:
        raise StackError(f"ports still taken after stopping the stack: {', '.join(busy)}")
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    """Each service of the state file: pid, whether it is alive and healthy, where it logs."""
    state = _load(settings.model_copy(update={"data_dir": settings.data_dir.resolve()}))
    rows = []
    for name in SERVICES:
        record = state["services"].get(name)
        if record is None:
            continue
        alive = _running(record)
        rows.append(
            ServiceStatus(
                name=name,
                url=record["url"],
                pid=record.get("pid"),
                alive=alive,
                healthy=alive and _healthy(record),
                log=record["log"],
            )
        )
    return rows


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Stop signals arriving inside take effect at its end (see :func:`stopping_on_signals`)."""
    global _deferring
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
    if _deferred:
        signum = _deferred[0]
        _deferred.clear()
        raise KeyboardInterrupt(signal.Signals(signum).name)


def _interrupt(signum: int, _frame: object) -> None:
    if _deferring:
        _deferred.append(signum)
        return
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def stopping_on_signals(settings: Settings, *, progress: bool = True) -> Iterator[None]:
    """Within this block, Ctrl-C, SIGTERM and SIGHUP alike stop the whole stack, then
    re-raise KeyboardInterrupt (commands exit with 130)."""
    previous = {s: signal.signal(s, _interrupt) for s in _STOP_SIGNALS}
    try:
        yield
    except KeyboardInterrupt as exc:
        say(progress, f"interrupted ({exc or 'SIGINT'}): stopping the stack", tag=TAG)
        down(settings, progress=progress)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
