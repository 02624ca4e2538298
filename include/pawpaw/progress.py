"""Progress output for long work: stderr, so stdout stays for results (e.g. a commit id)."""

from __future__ import annotations

import sys

__all__ = ["say"]


def say(enabled: bool, message: str, *, tag: str | None = None) -> None:
    if enabled:
        print(f"[{tag}] {message}" if tag else message, file=sys.stderr, flush=True)
