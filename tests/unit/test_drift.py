"""Drift measurement into SQLite: a shifted month alerts (also through the embeddings), a calm
one does not, estimates sit near realized RMSE, reruns replace, bad input writes nothing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pawpaw.config import Settings, get_settings
from pawpaw.data.image_stats import STAT_COLUMNS
from pawpaw.drift import (
    EMBEDDINGS,
    INPUT_COLUMNS,
    PERFORMANCE,
    DriftError,
    DriftResult,
    MonthTest,
    measure_drift,
    read_drift_runs,
    read_drift_tests,
)
from pawpaw.drift.store import served_versions
from pawpaw.drift.verdict import CONTINUOUS, holm
from pawpaw.schema import FLAGS

pytestmark = pytest.mark.unit

MONTH = datetime(2026, 2, 1)
N = 300  # rows per split: auto chunks of 30, so 10 reference and 10 analysis chunks
DIM = 24  # embedding dimensions
# One test per continuous column and flag, plus the two embedding methods.
TESTS_PER_RUN = len(CONTINUOUS) + len(FLAGS) + 2
# Per analysis chunk: a statistic per column and flag, the reconstruction error, and
# realized + estimated RMSE and MAE.
ROWS_PER_CHUNK = len(CONTINUOUS) + len(FLAGS) + 1 + 4


def drift_frame(
    seed: int, n: int = N, *, shift: float = 0.0, content: float = 0.0, prefix: str = "r"
) -> pd.DataFrame:
    """One row per test image, as the pipeline builds it. ``shift`` = 1: a darker, blurrier
    month (Blur flags up, predictions lower); ``content`` = 1: photos of other things that
    only the embeddings show (photo statistics, flags and scores unchanged)."""
    rng = np.random.default_rng(seed)
    target = rng.normal(38, 20, n).clip(1, 100).round()
    prediction = 0.3 * target + 0.7 * 38 + rng.normal(0, 5, n) - 10 * shift
    width = rng.choice([400, 600, 800, 1024], n).astype(float)
    height = rng.choice([300, 400, 600, 768], n).astype(float)
    frame = pd.DataFrame(
        {
            "Id": [f"{prefix}{i:031x}" for i in range(n)],
            "prediction": prediction,
            "Pawpularity": target,
            **{flag: (rng.random(n) < 0.3).astype(int) for flag in FLAGS},
            "brightness": rng.beta(5, 5, n) * (1 - 0.5 * shift),
            "contrast": rng.gamma(4, 0.05, n),
            "saturation": rng.beta(3, 4, n),
            "sharpness": rng.lognormal(-5, 0.8, n) * (1 - 0.8 * shift),
            "width": width,
            "height": height,
            "aspect_ratio": width / height,
        }
    )
    frame["Blur"] = (rng.random(n) < 0.1 + 0.5 * shift).astype(int)
    # Embeddings: a few strong directions plus noise; the content shift moves along one of
    # the weak ones, so it changes no statistic above.
    scales = np.linspace(3.0, 0.5, DIM)
    vectors = rng.normal(0, 1, (n, DIM)) * scales
    vectors[:, -1] += 3.0 * content
    for i in range(DIM):
        frame[f"embedding_{i}"] = vectors[:, i]
    return frame


def _measure(settings: Settings, analysis: pd.DataFrame, commit: str, **kw) -> DriftResult:
    args = {
        "reference": drift_frame(0),
        "analysis": analysis,
        "reference_commit": "ref-commit",
        "analysis_commit": commit,
        "model_version": "3",
        "month": MONTH,
        **kw,
    }
    return measure_drift(settings, **args)


def _table(settings: Settings, table: str, commit: str | None = None) -> pd.DataFrame:
    engine = sa.create_engine(settings.drift_db_url)
    where = " WHERE analysis_commit = :c" if commit else ""
    try:
        return pd.read_sql(sa.text(f"SELECT * FROM {table}{where}"), engine, params={"c": commit})
    finally:
        engine.dispose()


def _counts(settings: Settings) -> tuple[int, int, int]:
    return tuple(len(_table(settings, t)) for t in ("drift_runs", "drift_tests", "drift_metrics"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, DriftResult]]:
    """One SQLite store holding a calm, a shifted and a content-shifted month."""
    root = tmp_path_factory.mktemp("drift")
    settings = Settings(data_dir=root / "data", monitoring_db_url=None)
    results = {
        "calm": _measure(settings, drift_frame(1, prefix="a"), "calm", rmse_limit=30.0),
        "shifted": _measure(
            settings,
            drift_frame(2, shift=1.0, prefix="b"),
            "shifted",
            rmse_limit=10.0,
            report_path=root / "reports" / "shifted.html",
        ),
        "content": _measure(settings, drift_frame(3, content=1.0, prefix="c"), "content"),
    }
    return settings, results


def test_calm_month_gives_no_alert(store) -> None:
    settings, results = store
    calm = results["calm"]
    assert not calm.alert and calm.reasons == ()
    assert not any(t["alert"] for t in calm.tests)
    run = read_drift_runs(settings).set_index("analysis_commit").loc["calm"]
    assert not run.alert and run.reasons == ""


def test_shifted_month_alerts_with_the_shifted_columns_as_reasons(store) -> None:
    _, results = store
    shifted = results["shifted"]
    assert shifted.alert
    alerted = {t["column"] for t in shifted.tests if t["alert"]}
    assert {"prediction", "brightness", "sharpness", "Blur"} <= alerted
    assert alerted <= {"prediction", "brightness", "sharpness", "Blur", EMBEDDINGS}
    assert any("sharpness (kolmogorov_smirnov" in r for r in shifted.reasons)
    p_values = [float(r.rsplit("p=", 1)[1].rstrip(")")) for r in shifted.reasons]
    assert p_values == sorted(p_values)  # the strongest evidence first


def test_content_shift_alerts_through_the_embeddings_only(store) -> None:
    _, results = store
    content = results["content"]
    assert content.alert
    alerted = {(t["method"], t["column"]) for t in content.tests if t["alert"]}
    assert alerted and all(column == EMBEDDINGS for _, column in alerted), alerted
    assert ("domain_classifier", EMBEDDINGS) in alerted or (
        "data_reconstruction", EMBEDDINGS) in alerted  # fmt: skip


def test_estimated_rmse_sits_near_realized_and_the_limit_is_kept(store) -> None:
    settings, results = store
    for name in ("calm", "content"):
        result = results[name]
        assert result.estimate_error < 0.2, (name, result.estimated_rmse, result.rmse_analysis)
        assert result.estimate_error == pytest.approx(
            abs(result.estimated_rmse - result.rmse_analysis) / result.rmse_analysis
        )
    assert results["calm"].rmse_limit == 30.0 > results["calm"].estimated_rmse
    assert results["shifted"].estimated_rmse > results["shifted"].rmse_limit == 10.0
    assert results["content"].rmse_limit is None
    runs = read_drift_runs(settings).set_index("analysis_commit")
    assert runs.loc["calm", "estimated_rmse"] == pytest.approx(results["calm"].estimated_rmse)
    assert pd.isna(runs.loc["content", "rmse_limit"])


def test_tests_are_stored_with_their_holm_levels(store) -> None:
    settings, results = store
    key = {"analysis_commit": "shifted", "reference_commit": "ref-commit", "model_version": "3"}
    tests = read_drift_tests(settings, key)
    assert len(tests) == TESTS_PER_RUN
    assert set(tests.method) == {"kolmogorov_smirnov", "chi2", "data_reconstruction",
                                 "domain_classifier"}  # fmt: skip
    assert set(tests[tests.method == "chi2"].column_name) == set(FLAGS)
    assert "width" not in set(tests.column_name)  # height x aspect_ratio: not tested twice
    # Holm: the smallest p-value is held to alpha / m, and alerts are a prefix of the p order.
    ordered = tests.sort_values("p_value")
    assert ordered.alpha.iloc[0] == pytest.approx(settings.drift_alpha / TESTS_PER_RUN)
    alerts = ordered.alert.tolist()
    assert alerts == sorted(alerts, reverse=True)
    assert int(tests.alert.sum()) == len(results["shifted"].reasons)


def test_chunk_rows_are_timed_within_the_month(store) -> None:
    settings, _ = store
    rows = _table(settings, "drift_metrics", "shifted")
    assert len(rows) == 10 * ROWS_PER_CHUNK
    assert set(rows.column_name) == {*CONTINUOUS, *FLAGS, EMBEDDINGS, PERFORMANCE}
    assert set(rows[rows.column_name == PERFORMANCE].metric) == {
        "rmse", "mae", "estimated_rmse", "estimated_mae"}  # fmt: skip
    assert sorted(rows.chunk_index.unique()) == list(range(10))
    times = pd.to_datetime(rows.timestamp)
    assert times.min() > MONTH and times.max() < datetime(2026, 3, 1)
    assert (pd.to_datetime(rows.chunk_start) < times).all()
    assert (times < pd.to_datetime(rows.chunk_end)).all()
    assert (pd.to_datetime(rows.month) == MONTH).all()
    # Only the estimated performance carries thresholds (NannyML's, from reference chunks).
    with_thresholds = rows[rows.upper_threshold.notna()]
    assert set(with_thresholds.metric) == {"estimated_rmse", "estimated_mae"}


def test_report_is_a_self_contained_html_page(store) -> None:
    settings, _ = store
    page = (settings.data_dir.parent / "reports" / "shifted.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "Drift of shifted (2026-02) against ref-commit (model 3)" in page
    assert "ALERT: " in page and "Month-level tests" in page
    assert "Reconstruction error" in page and "estimated performance" in page
    assert page.count("plotly.js v") == 1  # inlined once: works offline


def test_rerun_replaces_rows_instead_of_adding(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, monitoring_db_url=None)
    first = _measure(settings, drift_frame(1, prefix="a"), "month-2")
    per_run = (1, TESTS_PER_RUN, first.rows_written)
    assert _counts(settings) == per_run
    again = _measure(settings, drift_frame(1, prefix="a"), "month-2")
    assert again == first  # same inputs, same numbers: every random choice is seeded
    assert _counts(settings) == per_run
    # Same key, different data (e.g. a corrected split): the old rows are gone, not mixed in.
    changed = _measure(settings, drift_frame(2, shift=1.0, prefix="b"), "month-2")
    assert _counts(settings) == per_run
    assert read_drift_runs(settings).alert.tolist() == [True] and changed.alert
    # The month measured by another model version is another run (the key holds the version).
    _measure(settings, drift_frame(1, prefix="a"), "month-2", model_version="4")
    assert _counts(settings) == tuple(2 * n for n in per_run)
    assert sorted(read_drift_runs(settings).model_version) == ["3", "4"]
    assert served_versions(settings, "month-2") == ["3", "4"]
    assert read_drift_runs(settings, "month-3").empty and served_versions(settings, "m3") == []


def test_result_is_json_friendly_and_months_may_be_strings(tmp_path: Path) -> None:
    import json

    settings = Settings(data_dir=tmp_path, monitoring_db_url=None)
    result = _measure(settings, drift_frame(1, prefix="a"), "m", month="2026-07", chunk_size=50)
    data = json.loads(json.dumps(result.to_dict()))
    assert DriftResult.from_dict(data) == result
    assert data["month"] == "2026-07" and data["chunk_size"] == 50 and data["n_reference"] == N
    assert len(data["tests"]) == TESTS_PER_RUN
    run = read_drift_runs(settings).iloc[0]
    assert pd.Timestamp(run.month) == pd.Timestamp(2026, 7, 1)
    assert result.rows_written == 6 * ROWS_PER_CHUNK  # 300 rows in chunks of 50


def test_holm_holds_the_family_and_stops_at_the_first_miss() -> None:
    tests = [
        MonthTest("m", c, 0.0, p) for c, p in zip("abcd", (0.001, 0.04, 0.012, 0.02), strict=True)
    ]
    out = holm(tests, 0.05)
    assert [t.alpha for t in out] == pytest.approx([0.05 / 4, 0.05 / 1, 0.05 / 3, 0.05 / 2])
    # 0.001 <= 0.0125 and 0.012 <= 0.0167 and 0.02 <= 0.025 and 0.04 <= 0.05: all alert.
    assert [t.alert for t in out] == [True, True, True, True]
    stopped = holm([*tests[:3], MonthTest("m", "d", 0.0, 0.03)], 0.05)
    # 0.03 > 0.025 stops the procedure: 0.04 is not tested, though it is below 0.05.
    assert [t.alert for t in stopped] == [True, False, True, False]
    with pytest.raises(DriftError, match=r"no p-value for b \(m\)"):
        holm([tests[0], MonthTest("m", "b", 0.0, float("nan"))], 0.05)


BAD_INPUTS = {
    "missing column": (
        {"analysis": drift_frame(1).drop(columns=["sharpness"])},
        r"analysis frame lacks columns \['sharpness'\]",
    ),
    "missing flag": (
        {"reference": drift_frame(0).drop(columns=["Blur"])},
        r"reference frame lacks columns \['Blur'\]",
    ),
    "no embeddings": (
        {"analysis": drift_frame(1).filter(regex="^(?!embedding_)")},
        "analysis frame has no embedding_<n> columns",
    ),
    "other backbone": (
        {"analysis": drift_frame(1).drop(columns=["embedding_23"])},
        "reference embeddings have 24 dimensions, analysis 23",
    ),
    "empty frame": ({"reference": drift_frame(0).iloc[:0]}, "reference frame has no rows"),
    "nan prediction": (
        {"analysis": drift_frame(1).assign(prediction=[np.nan, *[1.0] * (N - 1)])},
        r"analysis frame: column 'prediction' has 1 NaN/infinite values \(Ids r0+\)",
    ),
    "nan embedding": (
        {"analysis": drift_frame(1).assign(embedding_3=np.nan)},
        "column 'embedding_3' has 300 NaN/infinite values",
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
    "tiny chunk size": ({"chunk_size": 3}, "chunk_size must be >= 10"),
    "empty commit": ({"analysis_commit": " "}, "analysis_commit must be a non-empty string"),
    "bad month": ({"month": "February"}, "month must look like YYYY-MM, got 'February'"),
    "bad alpha": ({"alpha": 0.0}, r"alpha must be in \(0, 1\)"),
    "bad limit": ({"rmse_limit": -1.0}, "rmse_limit must be > 0"),
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


def test_bad_input_leaves_existing_rows_untouched(store) -> None:
    settings, _ = store
    before = _counts(settings), _table(settings, "drift_metrics", "calm")
    with pytest.raises(DriftError, match="prediction"):
        _measure(settings, drift_frame(1, prefix="a").assign(prediction=np.nan), "calm")
    after = _counts(settings), _table(settings, "drift_metrics", "calm")
    assert before[0] == after[0]
    pd.testing.assert_frame_equal(before[1], after[1])


@pytest.mark.parametrize(
    ("predictions", "message"),
    [
        (pd.DataFrame({"Id": ["a", "b"]}), r"the predictions lack columns \['prediction'\]"),
        (pd.DataFrame({"Id": ["a", "a", "b"], "prediction": [1.0, 2.0, 3.0]}),
         r"the predictions score 1 Ids twice \(e.g. \['a'\]\)"),
        (pd.DataFrame({"Id": ["a"], "prediction": [1.0]}),
         r"1 images of test split have no prediction \(e.g. \['b'\]\)"),
    ],
)  # fmt: skip
def test_a_drift_frame_needs_one_prediction_per_image(
    predictions: pd.DataFrame, message: str, tmp_path: Path
) -> None:
    from pawpaw.data.labeled import LabeledImages
    from pawpaw.drift.frames import drift_frame

    rows = pd.DataFrame({"Id": ["a", "b"], **dict.fromkeys(FLAGS, 0), "Pawpularity": [10, 20]})
    data = LabeledImages(rows, lambda _: b"", source="test split")
    settings = Settings(data_dir=tmp_path, monitoring_db_url=None)
    with pytest.raises(DriftError, match=message):
        drift_frame(settings, data, predictions)
    assert not (tmp_path / "backbones").exists()  # refused before any embedding


def test_tables_of_an_older_layout_are_replaced(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, monitoring_db_url=None)
    engine = sa.create_engine(settings.drift_db_url)
    with engine.begin() as conn:  # drift_runs as pawpaw wrote it before the month verdict
        conn.execute(sa.text("CREATE TABLE drift_runs (analysis_commit TEXT, n_alerts INT)"))
        conn.execute(sa.text("INSERT INTO drift_runs VALUES ('old', 3)"))
    engine.dispose()
    assert read_drift_runs(settings).empty  # readable (as no runs) before the first write
    _measure(settings, drift_frame(1, prefix="a"), "new")
    assert read_drift_runs(settings).analysis_commit.tolist() == ["new"]


def test_input_columns_are_the_documented_contract() -> None:
    assert ("Id", "prediction", "Pawpularity", *FLAGS, *STAT_COLUMNS) == INPUT_COLUMNS
    assert set(drift_frame(0).columns) == {*INPUT_COLUMNS, *(f"embedding_{i}" for i in range(DIM))}


def test_read_drift_runs_without_a_database_creates_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", monitoring_db_url=None)
    runs = read_drift_runs(settings)
    assert runs.empty and {"alert", "reasons", "estimated_rmse"} <= set(runs.columns)
    assert not (tmp_path / "data").exists()


def test_cli_prints_the_drift_runs(store, monkeypatch: pytest.MonkeyPatch) -> None:
    from pawpaw.cli import app

    settings, _ = store
    monkeypatch.setenv("PAWPAW_MONITORING_DB_URL", settings.drift_db_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["drift"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "calm" in result.output and "shifted" in result.output
    assert "ALERT: " in result.output and "sharpness" in result.output
    assert "2026-02" in result.output and "300 / 300" in result.output


def test_cli_says_when_there_are_no_runs(settings: Settings) -> None:
    from pawpaw.cli import app

    result = CliRunner().invoke(app, ["drift"])
    assert result.exit_code == 0
    assert "no drift runs" in result.output
