"""Local service processes for the embedded profile: start, wait until healthy, stop.

Used by `pawpaw demo` (and handy in a notebook). Each service runs as a child process whose
output goes to a log file under ``data_dir/logs``; a failed start raises with the log's tail.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pawpaw.config import Settings

__all__ = ["ServiceError", "ServiceProcess", "is_up", "start_service", "venv_tool"]


class ServiceError(RuntimeError):
    """A local service did not come up."""


def venv_tool(name: str) -> str:
    """An executable installed beside this Python (the project's venv), else from PATH."""
    local = Path(sys.executable).with_name(name)
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise ServiceError(f"{name!r} is not installed in {Path(sys.executable).parent} or PATH")
    return found


def is_up(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers with a status below 500."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


@dataclass
class ServiceProcess:
    name: str
    url: str
    process: subprocess.Popen | None = None  # None: it was already running, not ours
    log_path: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def stop(self, timeout: float = 15.0) -> None:
        if self._log is not None:
            self._log.close()
        if self.process is None or self.process.poll() is not None:
            return
        # The whole process group: servers (gunicorn/uvicorn workers) spawn children.
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_service(
    name: str,
    cmd: Sequence[str],
    *,
    health_url: str,
    url: str,
    settings: Settings,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> ServiceProcess:
    """Start ``cmd`` unless ``health_url`` already answers; wait until it does."""
    if is_up(health_url):
        print(f"  {name}: already running at {url}")
        return ServiceProcess(name, url)
    log_path = settings.data_dir / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    process = subprocess.Popen(
        list(cmd),
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    service = ServiceProcess(name, url, process, log_path, log)
    deadline = time.monotonic() + timeout
    while not is_up(health_url):
        if process.poll() is not None:
            raise ServiceError(f"{name} exited with {process.returncode}:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            service.stop()
            raise ServiceError(f"{name} not healthy after {timeout:.0f}s:\n{_tail(log_path)}")
        time.sleep(0.5)
    print(f"  {name}: {url}  (log: {log_path})")
    return service
