"""Processes of the stack: ports, process groups, health probes, log tails."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

__all__ = [
    "StackError",
    "alive",
    "answers",
    "group_pids",
    "json_at",
    "port_in_use",
    "port_owner",
    "signal_group",
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

    for conn in psutil.net_connections(kind="inet"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            if conn.pid is None:
                break
            try:
                cmdline = " ".join(psutil.Process(conn.pid).cmdline())[:120]
            except psutil.Error:
                cmdline = "?"
            return f"pid {conn.pid} ({cmdline})"
    return "another program"


def group_pids(pgid: int, marker: str) -> list[int]:
    """Live processes of process group ``pgid`` whose command line holds ``marker`` (the
    service's program: a group id reused by an unrelated program is never ours)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "status", "cmdline"]):
        try:
            if (
                os.getpgid(proc.pid) == pgid
                and proc.info["status"] != psutil.STATUS_ZOMBIE
                and marker in " ".join(proc.info["cmdline"] or ())
            ):
                found.append(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def alive(pid: int | None) -> bool:
    import psutil

    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
