"""Progress output for long work, the one channel every stage uses.

Plain lines on stderr, so stdout stays for results (a commit id, a version); inside an Airflow
task on stdout, because Airflow logs a task's stderr at ERROR level and progress is no error.
:func:`say` prints one line; :class:`Progress` counts items done (thread-safe) and prints a
line with the rate at most every ``every`` seconds.
"""

from __future__ import annotations

import os
import sys
import threading
import time

__all__ = ["Progress", "say"]


def say(enabled: bool, message: str, *, tag: str | None = None) -> None:
    """Print ``message`` (prefixed ``[tag]``) when ``enabled``: on stderr, or on stdout inside an
    Airflow task."""
    if enabled:
        # Airflow exports AIRFLOW_CTX_* into a task's environment while it runs.
        stream = sys.stdout if "AIRFLOW_CTX_DAG_ID" in os.environ else sys.stderr
        print(f"[{tag}] {message}" if tag else message, file=stream, flush=True)


class Progress:
    """``what: done/total (rate/s)`` lines for ``total`` items, from any number of threads."""

    def __init__(
        self,
        total: int,
        what: str,
        *,
        enabled: bool = True,
        tag: str | None = None,
        unit: str = "",
        every: float = 2.0,
    ) -> None:
        self.total, self.what, self.enabled, self.tag = total, what, enabled, tag
        self.unit, self.every = unit, every
        self.done = self.skipped = 0
        self.started = self._last = time.monotonic()
        self._lock = threading.Lock()

    def advance(self, k: int = 1, *, skipped: int = 0) -> None:
        """``k`` more items done, ``skipped`` of them unchanged (reused, cached)."""
        with self._lock:
            self.done += k
            self.skipped += skipped
            now = time.monotonic()
            if now - self._last < self.every and self.done < self.total:
                return
            self._last = now
            rate = self.done / max(now - self.started, 1e-9)
            extra = f"{self.skipped} unchanged, " if self.skipped else ""
            say(
                self.enabled,
                f"{self.what}: {self.done}/{self.total} ({extra}{rate:.1f} {self.unit}/s)"
                if self.unit
                else f"{self.what}: {self.done}/{self.total} ({extra}{rate:.1f}/s)",
                tag=self.tag,
            )
