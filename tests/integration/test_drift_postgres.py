"""Drift rows in real PostgreSQL: the schema Grafana reads, idempotent reruns, no partial writes."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pawpaw.config import Settings
from pawpaw.drift import DriftError, measure_drift, read_drift_runs
from tests.unit.test_drift import ROWS_PER_RUN, SHIFTED, drift_frame

pytestmark = pytest.mark.integration

# What the dashboard relies on, as PostgreSQL reports it (information_schema.columns).
EXPECTED_TYPES = {
    "drift_metrics": {
        "analysis_commit": "text",
        "reference_commit": "text",
        "model_version": "text",
        "period": "text",
        "chunk_index": "integer",
        "chunk_start": "timestamp without time zone",
        "chunk_end": "timestamp without time zone",
        "timestamp": "timestamp without time zone",
        "column_name": "text",
        "metric": "text",
        "value": "double precision",
        "lower_threshold": "double precision",
        "upper_threshold": "double precision",
        "alert": "boolean",
    },
    "drift_runs": {
        "analysis_commit": "text",
        "reference_commit": "text",
        "model_version": "text",
        "timestamp": "timestamp without time zone",
        "n_reference": "integer",
        "n_analysis": "integer",
        "n_alerts": "integer",
        "drifted_columns": "text",
        "rmse_reference": "double precision",
        "rmse_analysis": "double precision",
    },
}


@pytest.fixture
def pg_settings(settings: Settings, postgres_schema: str) -> Settings:
    return settings.model_copy(update={"monitoring_db_url": postgres_schema})


def _measure(settings: Settings, analysis: pd.DataFrame, commit: str = "month-2"):
    return measure_drift(
        settings,
        reference=drift_frame(0),
        analysis=analysis,
        reference_commit="month-1",
        analysis_commit=commit,
        model_version="7",
        reference_time=datetime(2026, 1, 1),
        analysis_time=datetime(2026, 2, 1),
    )


def _query(settings: Settings, sql: str) -> list[tuple]:
    engine = sa.create_engine(settings.drift_db_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def test_drift_rows_land_in_postgres_and_reruns_replace_them(pg_settings: Settings) -> None:
    first = _measure(pg_settings, drift_frame(2, shift=1.0, prefix="b"))
    assert set(SHIFTED) <= set(first.drifted_columns)
    # The tables were created in the test's own schema, with the documented column types.
    for table, expected in EXPECTED_TYPES.items():
        columns = _query(
            pg_settings,
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = current_schema() AND table_name = '{table}'",
        )
        assert dict(columns) == expected, table
    counts = "SELECT (SELECT count(*) FROM drift_metrics), (SELECT count(*) FROM drift_runs)"
    assert _query(pg_settings, counts) == [(ROWS_PER_RUN, 1)]

    again = _measure(pg_settings, drift_frame(2, shift=1.0, prefix="b"))
    assert again == first
    assert _query(pg_settings, counts) == [(ROWS_PER_RUN, 1)]

    # The same key with an unshifted month: the run's rows are replaced, not mixed.
    calm = _measure(pg_settings, drift_frame(1, prefix="a"))
    assert _query(pg_settings, counts) == [(ROWS_PER_RUN, 1)]
    alerts = _query(
        pg_settings, "SELECT count(*) FROM drift_metrics WHERE period = 'analysis' AND alert"
    )
    assert alerts == [(calm.n_alerts,)]
    assert calm.n_alerts < first.n_alerts / 5

    runs = read_drift_runs(pg_settings)
    assert runs[["analysis_commit", "reference_commit", "model_version"]].values.tolist() == [
        ["month-2", "month-1", "7"]
    ]
    assert runs.n_alerts.tolist() == [calm.n_alerts]


def test_bad_input_leaves_postgres_untouched(pg_settings: Settings) -> None:
    _measure(pg_settings, drift_frame(1, prefix="a"), commit="kept")
    before = _query(pg_settings, "SELECT * FROM drift_metrics ORDER BY 1, 2, 3, 4, 5, 9, 10")
    bad = drift_frame(2, prefix="b").assign(prediction=np.nan)
    with pytest.raises(DriftError, match="prediction"):
        _measure(pg_settings, bad, commit="kept")
    with pytest.raises(DriftError, match="lacks columns"):
        _measure(pg_settings, bad.drop(columns=["brightness"]), commit="new")
    after = _query(pg_settings, "SELECT * FROM drift_metrics ORDER BY 1, 2, 3, 4, 5, 9, 10")
    assert after == before
    assert len(read_drift_runs(pg_settings)) == 1


def test_reading_a_fresh_postgres_schema_gives_no_runs(pg_settings: Settings) -> None:
    runs = read_drift_runs(pg_settings)
    assert runs.empty
    assert _query(
        pg_settings,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    ) == [(0,)]
