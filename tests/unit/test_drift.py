"""Drift measurement into SQLite: shifted months alert, unshifted ones do not, reruns replace."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pawpaw.config import Settings, get_settings
from pawpaw.drift import (
    DRIFT_COLUMNS,
    INPUT_COLUMNS,
    METHODS,
    PERFORMANCE,
    PERFORMANCE_METRICS,
    DriftError,
    DriftResult,
    measure_drift,
    read_drift_runs,
)

pytestmark = pytest.mark.unit

REFERENCE_TIME = datetime(2026, 1, 1)
ANALYSIS_TIME = datetime(2026, 2, 1)
N = 300  # rows per split: auto chunks of 30, so 10 reference and 10 analysis chunks
SHIFTED = ("prediction", "brightness", "sharpness")  # what drift_frame(shift=1) changes
# Per run: 20 chunks x (8 drift columns x 2 methods + 2 performance metrics).
ROWS_PER_RUN = 20 * (len(DRIFT_COLUMNS) * len(METHODS) + len(PERFORMANCE_METRICS))


def drift_frame(seed: int, n: int = N, *, shift: float = 0.0, prefix: str = "r") -> pd.DataFrame:
    """One row per test image, as the pipeline builds it; ``shift`` = 1 is a darker, blurrier
    month whose predictions are lower (and worse), all else drawn from the same population."""
    rng = np.random.default_rng(seed)
    target = rng.normal(38, 20, n).clip(1, 100).round()
    prediction = 0.3 * target + 0.7 * 38 + rng.normal(0, 5, n) - 10 * shift
    width = rng.choice([400, 600, 800, 1024], n).astype(float)
    height = rng.choice([300, 400, 600, 768], n).astype(float)
    return pd.DataFrame(
        {
            "Id": [f"{prefix}{i:031x}" for i in range(n)],
            "prediction": prediction,
            "Pawpularity": target,
            "brightness": rng.beta(5, 5, n) * (1 - 0.5 * shift),
            "contrast": rng.gamma(4, 0.05, n),
            "saturation": rng.beta(3, 4, n),
            "sharpness": rng.lognormal(-5, 0.8, n) * (1 - 0.8 * shift),
            "width": width,
            "height": height,
            "aspect_ratio": width / height,
        }
    )


def _measure(settings: Settings, analysis: pd.DataFrame, commit: str, **kw) -> DriftResult:
    args = {
        "reference": drift_frame(0),
        "analysis": analysis,
        "reference_commit": "ref-commit",
        "analysis_commit": commit,
        "model_version": "3",
        "reference_time": REFERENCE_TIME,
        "analysis_time": ANALYSIS_TIME,
        **kw,
    }
    return measure_drift(settings, **args)


def _metrics(settings: Settings, commit: str) -> pd.DataFrame:
    engine = sa.create_engine(settings.drift_db_url)
    try:
        return pd.read_sql(
            sa.text("SELECT * FROM drift_metrics WHERE analysis_commit = :c"),
            engine,
            params={"c": commit},
        )
    finally:
        engine.dispose()


def _counts(settings: Settings) -> tuple[int, int]:
    engine = sa.create_engine(settings.drift_db_url)
    try:
        with engine.connect() as conn:
            return tuple(
                conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("drift_metrics", "drift_runs")
            )
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One SQLite store holding an unshifted ('same') and a shifted month ('shifted')."""
    root = tmp_path_factory.mktemp("drift")
    settings = Settings(data_dir=root / "data", monitoring_db_url=None)
    _measure(settings, drift_frame(1, prefix="a"), "same")
    _measure(
        settings,
        drift_frame(2, shift=1.0, prefix="b"),
        "shifted",
        report_path=root / "reports" / "shifted.html",
    )
    return settings


def test_shifted_month_alerts_on_the_shifted_columns(store: Settings) -> None:
    runs = read_drift_runs(store).set_index("analysis_commit")
    drifted = set(runs.loc["shifted", "drifted_columns"].split(","))
    assert set(SHIFTED) <= drifted
    rows = _metrics(store, "shifted")
    analysis = rows[rows.period == "analysis"]
    alert_share = analysis.groupby("column_name").alert.mean()
    for column in SHIFTED:
        assert alert_share[column] > 0.8, column  # nearly every chunk, by both methods
    unshifted = [c for c in DRIFT_COLUMNS if c not in SHIFTED]
    assert alert_share[unshifted].max() <= 0.1
    # Lower predictions on unchanged labels: realized RMSE rose, and performance alerts.
    assert runs.loc["shifted", "rmse_analysis"] > runs.loc["shifted", "rmse_reference"] + 2
    assert alert_share[PERFORMANCE] >= 0.2  # chunks of 30 rows: RMSE per chunk is noisy


def test_unshifted_month_raises_few_alerts(store: Settings) -> None:
    run = read_drift_runs(store).set_index("analysis_commit").loc["same"]
    assert run.n_alerts <= 4  # of 180 analysis checks: calibrated thresholds, ~1 % false alarms
    assert abs(run.rmse_analysis - run.rmse_reference) < 2
    rows = _metrics(store, "same")
    assert len(rows) == ROWS_PER_RUN
    assert int(rows[rows.period == "analysis"].alert.sum()) == run.n_alerts
    # Reference chunks are scored against the rest of the reference, so they are as far from
    # it as a fresh sample is (NannyML's in-sample scores run ~20-40 % lower).
    drift = rows[rows.column_name != PERFORMANCE]
    mean = drift.groupby("period").value.mean()
    assert 0.85 < mean["reference"] / mean["analysis"] < 1.15


def test_rows_are_consistent_and_timed_within_each_month(store: Settings) -> None:
    rows = _metrics(store, "shifted")
    assert len(rows) == ROWS_PER_RUN
    assert set(rows.period) == {"reference", "analysis"}
    assert set(rows.column_name) == {*DRIFT_COLUMNS, PERFORMANCE}
    assert set(rows[rows.column_name == PERFORMANCE].metric) == set(PERFORMANCE_METRICS)
    assert set(rows[rows.column_name != PERFORMANCE].metric) == set(METHODS)
    # An alert is exactly a value above the upper threshold (no lower thresholds here).
    assert rows.lower_threshold.isna().all()
    assert rows.upper_threshold.notna().all()
    assert ((rows.value > rows.upper_threshold) == rows.alert.astype(bool)).all()
    for period, start in (("reference", REFERENCE_TIME), ("analysis", ANALYSIS_TIME)):
        part = rows[rows.period == period]
        times = pd.to_datetime(part.timestamp)
        assert sorted(part.chunk_index.unique()) == list(range(10))
        assert times.min() > start
        assert times.max() < start + timedelta(days=31)
        assert (pd.to_datetime(part.chunk_start) < times).all()
        assert (times < pd.to_datetime(part.chunk_end)).all()


def test_report_is_a_self_contained_html_page(store: Settings) -> None:
    page = (store.data_dir.parent / "reports" / "shifted.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "Drift of shifted against ref-commit (model 3)" in page
    assert "Univariate drift" in page and "Realized performance" in page
    assert page.count("plotly.js v") == 1  # inlined once: works offline


def test_rerun_replaces_rows_instead_of_adding(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, monitoring_db_url=None)
    first = _measure(settings, drift_frame(1, prefix="a"), "month-2")
    assert first.rows_written == ROWS_PER_RUN
    assert _counts(settings) == (ROWS_PER_RUN, 1)
    again = _measure(settings, drift_frame(1, prefix="a"), "month-2")
    assert again == first  # same inputs, same numbers: the calibration is seeded
    assert _counts(settings) == (ROWS_PER_RUN, 1)
    # Same key, different data (e.g. a corrected split): the old rows are gone, not mixed in.
    changed = _measure(settings, drift_frame(2, shift=1.0, prefix="b"), "month-2")
    assert _counts(settings) == (ROWS_PER_RUN, 1)
    runs = read_drift_runs(settings)
    assert runs.n_alerts.tolist() == [changed.n_alerts]
    assert changed.n_alerts > first.n_alerts
    # Re-measured by another champion (a month rerun after a promotion): its view replaces the
    # old one; one run per (analysis, reference) pair.
    _measure(settings, drift_frame(1, prefix="a"), "month-2", model_version="4")
    assert _counts(settings) == (ROWS_PER_RUN, 1)
    assert read_drift_runs(settings).model_version.tolist() == ["4"]
    # Another month is another run.
    _measure(settings, drift_frame(1, prefix="a"), "month-3")
    assert _counts(settings) == (2 * ROWS_PER_RUN, 2)


def test_result_is_json_friendly_and_times_may_be_aware(tmp_path: Path) -> None:
    import json

    settings = Settings(data_dir=tmp_path, monitoring_db_url=None)
    result = _measure(
        settings,
        drift_frame(1, prefix="a"),
        "aware",
        analysis_time=datetime(2026, 2, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))),
        chunk_size=50,
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert data["chunk_size"] == 50 and data["n_reference"] == N
    assert isinstance(data["drifted_columns"], list)
    run = read_drift_runs(settings).iloc[0]
    assert pd.Timestamp(run.timestamp) == pd.Timestamp(ANALYSIS_TIME)  # stored as naive UTC
    assert result.rows_written == 12 * (len(DRIFT_COLUMNS) * len(METHODS) + 2)  # 6 + 6 chunks


BAD_INPUTS = {
    "missing column": (
        {"analysis": drift_frame(1).drop(columns=["sharpness"])},
        r"analysis frame lacks columns \['sharpness'\]",
    ),
    "empty frame": ({"reference": drift_frame(0).iloc[:0]}, "reference frame has no rows"),
    "nan prediction": (
        {"analysis": drift_frame(1).assign(prediction=[np.nan, *[1.0] * (N - 1)])},
        r"analysis frame: column 'prediction' has 1 NaN/infinite values \(Ids r0+\)",
    ),
    "infinite feature": (
        {"reference": drift_frame(0).assign(width=np.inf)},
        "column 'width' has 300 NaN/infinite values",
    ),
    "text feature": (
        {"analysis": drift_frame(1).assign(brightness="dark")},
        "column 'brightness' is object, not numeric",
    ),
    "duplicate ids": (
        {"analysis": drift_frame(1).assign(Id="same-id")},
        "analysis frame: duplicate Ids same-id",
    ),
    "too few reference rows": (
        {"reference": drift_frame(0, 25)},
        "reference frame has 25 rows: thresholds need at least 3 chunks",
    ),
    "too few analysis rows": (
        {"analysis": drift_frame(1, 40), "chunk_size": 50},
        "analysis frame has 40 rows: fewer than one chunk of 50 rows",
    ),
    "tiny chunk size": ({"chunk_size": 3}, "chunk_size must be >= 10"),
    "empty commit": ({"analysis_commit": " "}, "analysis_commit must be a non-empty string"),
    "not a time": ({"analysis_time": "2026-02-01"}, "analysis_time must be a datetime"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_named_and_writes_nothing(case: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, monitoring_db_url=None)
    overrides, message = BAD_INPUTS[case]
    overrides = {"analysis": drift_frame(1), **overrides}
    with pytest.raises(DriftError, match=message):
        _measure(
            settings, overrides.pop("analysis"), overrides.pop("analysis_commit", "x"), **overrides
        )
    assert not (tmp_path / "monitoring.db").exists()  # not even an empty database


def test_bad_input_leaves_existing_rows_untouched(store: Settings) -> None:
    before = _counts(store), _metrics(store, "same")
    with pytest.raises(DriftError, match="prediction"):
        _measure(store, drift_frame(1, prefix="a").assign(prediction=np.nan), "same")
    after = _counts(store), _metrics(store, "same")
    assert before[0] == after[0]
    pd.testing.assert_frame_equal(before[1], after[1])


def test_input_columns_are_the_documented_contract() -> None:
    assert INPUT_COLUMNS[:3] == ("Id", "prediction", "Pawpularity")
    assert set(drift_frame(0).columns) == set(INPUT_COLUMNS)


def test_read_drift_runs_without_a_database_creates_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", monitoring_db_url=None)
    runs = read_drift_runs(settings)
    assert runs.empty and "drifted_columns" in runs.columns
    assert not (tmp_path / "data").exists()


def test_cli_prints_the_drift_runs(store: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from pawpaw.cli import app

    monkeypatch.setenv("PAWPAW_MONITORING_DB_URL", store.drift_db_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["drift"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "same" in result.output and "shifted" in result.output
    assert "sharpness" in result.output
    assert "300 / 300" in result.output


def test_cli_says_when_there_are_no_runs(settings: Settings) -> None:
    from pawpaw.cli import app

    result = CliRunner().invoke(app, ["drift"])
    assert result.exit_code == 0
    assert "no drift runs" in result.output
