"""Shared test setup. Service fixtures live in tests/fixtures/<service>.py, one file each."""

from __future__ import annotations

import os

# Before anything imports nannyml: it phones home otherwise.
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.postgres",
    "tests.fixtures.data",
    "tests.fixtures.lakefs",
    "tests.fixtures.mlflow",
]
