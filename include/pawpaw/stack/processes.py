"""Processes of the stack: ports, process groups, health probes, log tails."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

__all__ = [
    "StackError",
    "alive",
    "answers",
    "json_at",
    "port_in_use",
    "port_owner",
    "service_processes",
    "stop_processes",
    "tail",
    "tool",
]


class StackError(RuntimeError):
    """The stack cannot start (a port taken, a service unhealthy); the message says which."""


def answers(url: str, timeout: float = 2.0) -> bool:
    """True when ``url`` answers with a status below 500."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def json_at(url: str, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def tool(name: str) -> str:
    """An executable of the project's environment (beside this Python)."""
    local = Path(sys.executable).with_name(name)
    if not local.exists():
        raise StackError(f"{name!r} is not installed beside {sys.executable}: run `make setup`")
    return str(local)


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def port_owner(port: int) -> str:
    """Who listens on ``port``: 'pid N (command line)', as far as this user may see."""
    import psutil

    try:
        connections = psutil.net_connections(kind="inet")
    except psutil.Error:  # e.g. not allowed to list other users' sockets
        return "another program"
    for conn in connections:
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            if conn.pid is None:
                break
            try:
                cmdline = " ".join(psutil.Process(conn.pid).cmdline())[:120]
            except psutil.Error:
                cmdline = "?"
            return f"pid {conn.pid} ({cmdline})"
    return "another program"


def service_processes(
    pid: int | None, pgids: list[int], programs: Sequence[str]
) -> list[psutil.Process]:
    """A service's live processes: its leader and the leader's descendants (workers that start
    sessions of their own, as BentoML's do, included), and every member of each of its process
    groups that still runs the service's program (one of ``programs`` in some member's command
    line: a pid or group id reused by another program is left alone)."""
    import psutil

    found: dict[int, psutil.Process] = {}
    leader = _ours(pid, programs)
    if leader is not None:
        with contextlib.suppress(psutil.Error):
            found = {p.pid: p for p in (leader, *leader.children(recursive=True))}
    groups: dict[int, list[psutil.Process]] = {}
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(OSError, psutil.Error):
            pgid = os.getpgid(proc.pid)
            if pgid in pgids and _running(proc):
                groups.setdefault(pgid, []).append(proc)
    for members in groups.values():
        if any(_runs(m.info["cmdline"], programs) for m in members):
            for member in members:
                found.setdefault(member.pid, member)
    return [p for p in found.values() if _running(p)]


def _runs(cmdline: Sequence[str] | None, programs: Sequence[str]) -> bool:
    text = " ".join(cmdline or ())
    return any(program in text for program in programs)


def _ours(pid: int | None, programs: Sequence[str]) -> psutil.Process | None:
    import psutil

    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        return proc if _running(proc) and _runs(proc.cmdline(), programs) else None
    except psutil.Error:
        return None


def _running(proc: psutil.Process) -> bool:
    import psutil

    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def alive(pid: int | None, programs: Sequence[str]) -> bool:
    """Whether ``pid`` runs, and runs one of the service's ``programs``."""
    return _ours(pid, programs) is not None


def stop_processes(procs: list[psutil.Process], timeout: float) -> None:
    """SIGTERM each, wait up to ``timeout`` seconds, SIGKILL what is left."""
    import psutil

    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        deadline = time.monotonic() + wait
        while (procs := [p for p in procs if _running(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
