"""Drift rows in real PostgreSQL: the schema Grafana reads, idempotent reruns, no partial writes."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from pawpaw.config import Settings
from pawpaw.drift import (
    DRIFT_METRICS,
    DRIFT_RUNS,
    DRIFT_TESTS,
    DriftError,
    measure_drift,
    read_drift_runs,
)
from tests.unit.test_drift import TESTS_PER_RUN, drift_frame

pytestmark = pytest.mark.integration

# How PostgreSQL reports the SQLAlchemy types we declare (information_schema.columns).
PG_TYPES = {
    "TEXT": "text",
    "INTEGER": "integer",
    "FLOAT": "double precision",
    "BOOLEAN": "boolean",
    "DATETIME": "timestamp without time zone",
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
        month=datetime(2026, 2, 1),
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
    assert first.alert and "Blur" in {t["column"] for t in first.tests if t["alert"]}
    # The tables were created in the test's own schema, with the declared column types.
    for table in (DRIFT_RUNS, DRIFT_TESTS, DRIFT_METRICS):
        columns = _query(
            pg_settings,
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = current_schema() AND table_name = '{table.name}'",
        )
        assert dict(columns) == {c.name: PG_TYPES[str(c.type)] for c in table.columns}
    counts = (
        "SELECT (SELECT count(*) FROM drift_runs), (SELECT count(*) FROM drift_tests), "
        "(SELECT count(*) FROM drift_metrics)"
    )
    per_run = (1, TESTS_PER_RUN, first.rows_written)
    assert _query(pg_settings, counts) == [per_run]

    again = _measure(pg_settings, drift_frame(2, shift=1.0, prefix="b"))
    assert again == first
    assert _query(pg_settings, counts) == [per_run]

    # The same key with a calm month: the run's rows are replaced, not mixed.
    calm = _measure(pg_settings, drift_frame(1, prefix="a"))
    assert not calm.alert
    assert _query(pg_settings, counts) == [per_run]
    assert _query(pg_settings, "SELECT count(*) FROM drift_tests WHERE alert") == [(0,)]
    runs = read_drift_runs(pg_settings)
    assert runs[["analysis_commit", "reference_commit", "model_version"]].values.tolist() == [
        ["month-2", "month-1", "7"]
    ]
    assert runs.alert.tolist() == [False]
    assert runs.estimated_rmse.tolist() == [pytest.approx(calm.estimated_rmse)]


def test_bad_input_leaves_postgres_untouched(pg_settings: Settings) -> None:
    _measure(pg_settings, drift_frame(1, prefix="a"), commit="kept")
    before = _query(pg_settings, "SELECT * FROM drift_metrics ORDER BY 1, 2, 3, 5, 9, 10")
    bad = drift_frame(2, prefix="b").assign(prediction=np.nan)
    with pytest.raises(DriftError, match="prediction"):
        _measure(pg_settings, bad, commit="kept")
    with pytest.raises(DriftError, match="lacks columns"):
        _measure(pg_settings, bad.drop(columns=["brightness"]), commit="new")
    after = _query(pg_settings, "SELECT * FROM drift_metrics ORDER BY 1, 2, 3, 5, 9, 10")
    assert after == before
    assert len(read_drift_runs(pg_settings)) == 1


def test_reading_a_fresh_postgres_schema_gives_no_runs(pg_settings: Settings) -> None:
    runs = read_drift_runs(pg_settings)
    assert runs.empty
    assert _query(
        pg_settings,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    ) == [(0,)]
