"""Where drift results are kept: the ``drift_runs``, ``drift_tests`` and ``drift_metrics`` tables.

They live in the SQL database at ``settings.drift_db_url`` (PostgreSQL in production, SQLite in
the embedded profile); the Grafana dashboard and its alert rules read them. Every row carries
the run's key (``analysis_commit``, ``reference_commit``, ``model_version``) and its ``month``
(the first instant of the month analysed: the DAG's logical month, naive UTC):

- ``drift_runs``: one row per run, the month's verdict (``alert``, ``reasons``), realized and
  estimated RMSE/MAE and the RMSE limit the pipeline retrains at;
- ``drift_tests``: one row per month-level test (method, column, statistic, p-value, the
  Holm-adjusted significance level it was held to, alert);
- ``drift_metrics``: one row per analysis chunk, column and metric, for the plots.

Rerunning a key replaces its rows in one transaction. A table left by an older layout (other
columns) is dropped and recreated on the next write: drift rows are derived, a rerun refills them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from pawpaw.config import Settings

__all__ = [
    "DRIFT_METRICS",
    "DRIFT_RUNS",
    "DRIFT_TESTS",
    "KEY_COLUMNS",
    "read_drift_runs",
    "read_drift_tests",
    "replace_rows",
    "served_versions",
]

_METADATA = sa.MetaData()
KEY_COLUMNS: tuple[str, ...] = ("analysis_commit", "reference_commit", "model_version")


def _key_columns() -> list[sa.Column]:
    return [sa.Column(name, sa.Text, nullable=False) for name in KEY_COLUMNS] + [
        sa.Column("month", sa.DateTime, nullable=False)
    ]


DRIFT_RUNS = sa.Table(
    "drift_runs",
    _METADATA,
    *_key_columns(),
    sa.Column("n_reference", sa.Integer, nullable=False),
    sa.Column("n_analysis", sa.Integer, nullable=False),
    sa.Column("alert", sa.Boolean, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),  # '; '-joined, '' when calm
    sa.Column("rmse_reference", sa.Float, nullable=False),
    sa.Column("rmse_analysis", sa.Float, nullable=False),  # realized (labels known)
    sa.Column("mae_analysis", sa.Float, nullable=False),
    sa.Column("estimated_rmse", sa.Float, nullable=False),  # NannyML DLE (no labels used)
    sa.Column("estimated_mae", sa.Float, nullable=False),
    sa.Column("estimate_error", sa.Float, nullable=False),  # |estimated - realized| / realized
    sa.Column("rmse_limit", sa.Float, nullable=True),  # retrain above this RMSE (None: unset)
    sa.PrimaryKeyConstraint(*KEY_COLUMNS, name="pk_drift_runs"),
    sa.Index("ix_drift_runs_month", "month"),
)

DRIFT_TESTS = sa.Table(
    "drift_tests",
    _METADATA,
    *_key_columns(),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("column_name", sa.Text, nullable=False),  # a column, or 'embeddings'
    sa.Column("statistic", sa.Float, nullable=False),
    sa.Column("p_value", sa.Float, nullable=False),
    sa.Column("alpha", sa.Float, nullable=False),  # the Holm-adjusted level it was held to
    sa.Column("alert", sa.Boolean, nullable=False),
    sa.PrimaryKeyConstraint(*KEY_COLUMNS, "method", "column_name", name="pk_drift_tests"),
)

DRIFT_METRICS = sa.Table(
    "drift_metrics",
    _METADATA,
    *_key_columns(),
    sa.Column("chunk_index", sa.Integer, nullable=False),
    sa.Column("chunk_start", sa.DateTime, nullable=False),
    sa.Column("chunk_end", sa.DateTime, nullable=False),
    sa.Column("timestamp", sa.DateTime, nullable=False),  # the chunk's midpoint
    sa.Column("column_name", sa.Text, nullable=False),  # a column, 'embeddings', 'performance'
    sa.Column("metric", sa.Text, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("lower_threshold", sa.Float, nullable=True),
    sa.Column("upper_threshold", sa.Float, nullable=True),
    sa.Column("alert", sa.Boolean, nullable=False),
    sa.PrimaryKeyConstraint(
        *KEY_COLUMNS, "chunk_index", "column_name", "metric", name="pk_drift_metrics"
    ),
    sa.Index("ix_drift_metrics_timestamp", "timestamp"),
)

_TABLES = (DRIFT_METRICS, DRIFT_TESTS, DRIFT_RUNS)


def read_drift_runs(settings: Settings, analysis_commit: str | None = None) -> pd.DataFrame:
    """The rows of ``drift_runs`` (only ``analysis_commit``'s when given), oldest month first;
    empty (same columns) when there are none."""
    where = [] if analysis_commit is None else [DRIFT_RUNS.c.analysis_commit == analysis_commit]
    return _read(settings, DRIFT_RUNS, (DRIFT_RUNS.c.month, *_key_order(DRIFT_RUNS)), where)


def read_drift_tests(settings: Settings, key: dict[str, str]) -> pd.DataFrame:
    """The month-level tests of one run (``key``: ``KEY_COLUMNS``), in a stable order."""
    where = [DRIFT_TESTS.c[name] == value for name, value in key.items()]
    return _read(settings, DRIFT_TESTS, (DRIFT_TESTS.c.method, DRIFT_TESTS.c.column_name), where)


def served_versions(settings: Settings, analysis_commit: str) -> list[str]:
    """The model versions whose drift runs of ``analysis_commit`` are stored (oldest first)."""
    found = read_drift_runs(settings, analysis_commit).model_version.unique()
    return sorted((str(v) for v in found), key=lambda v: (len(v), v))


def _key_order(table: sa.Table) -> list[sa.Column]:
    return [table.c[name] for name in KEY_COLUMNS]


def _read(
    settings: Settings, table: sa.Table, order: Any, where: list[Any] | None = None
) -> pd.DataFrame:
    columns = [c.name for c in table.columns]
    url = sa.engine.make_url(settings.drift_db_url)
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None and not sqlite_file.exists():
        # Reading must not create an empty database file as a side effect.
        return pd.DataFrame(columns=columns)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table(table.name) or _outdated(inspector, table):
                # None yet, or rows of an older layout (replaced at the next write).
                return pd.DataFrame(columns=columns)
            query = sa.select(table).where(*(where or [])).order_by(*order)
            rows = conn.execute(query).mappings().all()
    finally:
        engine.dispose()
    return pd.DataFrame([dict(r) for r in rows], columns=columns)


def _sqlite_file(url: sa.engine.URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def _outdated(inspector: sa.Inspector, table: sa.Table) -> bool:
    """Whether the database's ``table`` has other columns than ours (an older pawpaw's)."""
    found = {c["name"] for c in inspector.get_columns(table.name)}
    return found != {c.name for c in table.columns}


def _drop_outdated(conn: sa.Connection) -> None:
    """Drop a drift table whose columns are not ours (written by an older pawpaw): its rows
    are derived data, and rerunning the drift step refills it."""
    inspector = sa.inspect(conn)
    for table in _TABLES:
        if inspector.has_table(table.name) and _outdated(inspector, table):
            table.drop(conn)


def replace_rows(
    db_url: str,
    key: dict[str, str],
    run: dict[str, Any],
    tests: list[dict[str, Any]],
    metrics: list[dict[str, Any]],
) -> None:
    """Create the tables if missing, then delete this key's rows and insert the new ones,
    all in one transaction: a reader sees the old rows or the new, never both or neither."""
    url = sa.engine.make_url(db_url)
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None:
        sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            _drop_outdated(conn)
            _METADATA.create_all(conn)
            for table in _TABLES:
                conn.execute(
                    table.delete().where(*(table.c[name] == value for name, value in key.items()))
                )
            conn.execute(DRIFT_RUNS.insert(), [run])
            if tests:
                conn.execute(DRIFT_TESTS.insert(), tests)
            if metrics:
                conn.execute(DRIFT_METRICS.insert(), metrics)
    finally:
        engine.dispose()
