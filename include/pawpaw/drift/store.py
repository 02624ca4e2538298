"""Where drift results are kept: the ``drift_metrics`` and ``drift_runs`` tables.

They live in the SQL database at ``settings.drift_db_url`` (PostgreSQL in production, SQLite in
the embedded profile), and the Grafana dashboard reads them: ``drift_metrics`` holds one row
per period, chunk, column and metric, ``drift_runs`` one row per (analysis_commit,
reference_commit), with the ``model_version`` that measured it. A rerun of the same month pair
(after a promotion too) replaces its rows in one transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from pawpaw.config import Settings

__all__ = ["DRIFT_METRICS", "DRIFT_RUNS", "read_drift_runs", "replace_rows"]

_METADATA = sa.MetaData()

DRIFT_METRICS = sa.Table(
    "drift_metrics",
    _METADATA,
    sa.Column("analysis_commit", sa.Text, nullable=False),
    sa.Column("reference_commit", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("period", sa.Text, nullable=False),  # 'reference' | 'analysis'
    sa.Column("chunk_index", sa.Integer, nullable=False),
    sa.Column("chunk_start", sa.DateTime, nullable=False),
    sa.Column("chunk_end", sa.DateTime, nullable=False),
    sa.Column("timestamp", sa.DateTime, nullable=False),
    sa.Column("column_name", sa.Text, nullable=False),  # a feature, 'prediction', 'performance'
    sa.Column("metric", sa.Text, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("lower_threshold", sa.Float, nullable=True),
    sa.Column("upper_threshold", sa.Float, nullable=True),
    sa.Column("alert", sa.Boolean, nullable=False),
    sa.UniqueConstraint(
        "analysis_commit",
        "reference_commit",
        "period",
        "chunk_index",
        "column_name",
        "metric",
        name="uq_drift_metrics_row",
    ),
    sa.Index("ix_drift_metrics_timestamp", "timestamp"),
)

DRIFT_RUNS = sa.Table(
    "drift_runs",
    _METADATA,
    sa.Column("analysis_commit", sa.Text, nullable=False),
    sa.Column("reference_commit", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("timestamp", sa.DateTime, nullable=False),
    sa.Column("n_reference", sa.Integer, nullable=False),
    sa.Column("n_analysis", sa.Integer, nullable=False),
    sa.Column("n_alerts", sa.Integer, nullable=False),
    sa.Column("drifted_columns", sa.Text, nullable=False),  # comma list, '' when none
    sa.Column("rmse_reference", sa.Float, nullable=False),
    sa.Column("rmse_analysis", sa.Float, nullable=False),
    sa.PrimaryKeyConstraint("analysis_commit", "reference_commit", name="pk_drift_runs"),
)

_RUN_COLUMNS: tuple[str, ...] = tuple(c.name for c in DRIFT_RUNS.columns)


def read_drift_runs(settings: Settings) -> pd.DataFrame:
    """All rows of ``drift_runs``, oldest first; empty (same columns) when none were written."""
    url = sa.engine.make_url(settings.drift_db_url)
    if _sqlite_file(url) is not None and not _sqlite_file(url).exists():
        # Reading must not create an empty database file as a side effect.
        return pd.DataFrame(columns=list(_RUN_COLUMNS))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(DRIFT_RUNS.name):
                return pd.DataFrame(columns=list(_RUN_COLUMNS))
            query = sa.select(DRIFT_RUNS).order_by(
                DRIFT_RUNS.c.timestamp, DRIFT_RUNS.c.analysis_commit, DRIFT_RUNS.c.model_version
            )
            rows = conn.execute(query).mappings().all()
    finally:
        engine.dispose()
    return pd.DataFrame([dict(r) for r in rows], columns=list(_RUN_COLUMNS))


def _sqlite_file(url: sa.engine.URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def replace_rows(
    db_url: str, key: dict[str, str], rows: list[dict[str, Any]], run: dict[str, Any]
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
            _METADATA.create_all(conn)
            for table in (DRIFT_METRICS, DRIFT_RUNS):
                conn.execute(
                    table.delete().where(*(table.c[name] == value for name, value in key.items()))
                )
            conn.execute(DRIFT_METRICS.insert(), rows)
            conn.execute(DRIFT_RUNS.insert(), [run])
    finally:
        engine.dispose()
