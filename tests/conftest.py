"""Shared test setup. Service fixtures live in tests/fixtures/<service>.py, one file each."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before anything imports nannyml: it phones home otherwise.
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
# Before anything imports airflow (its configuration is read at import): a private home with
# a SQLite metastore, our dags folder, no examples.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="pawpaw-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(Path(__file__).parents[1] / "dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.postgres",
    "tests.fixtures.data",
    "tests.fixtures.lakefs",
    "tests.fixtures.mlflow",
    "tests.fixtures.airflow",
    "tests.fixtures.s3",
    "tests.fixtures.champion",
    "tests.fixtures.browser",
]
