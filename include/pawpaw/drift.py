"""Drift: how one month's test split differs from an earlier one, measured with NannyML.

Inputs are two frames with one row per test image (``Id``, the model's ``prediction``, the
label ``Pawpularity`` and the photo statistics of :mod:`pawpaw.data.image_stats`): the reference
(an earlier commit) and the analysis (the new commit), both scored by the same model version.

Measured, in chunks of ``chunk_size`` rows (several per split, so thresholds exist):

- univariate drift of ``prediction`` and every ``STAT_COLUMNS`` feature, with Jensen-Shannon
  distance and the Kolmogorov-Smirnov statistic (``UnivariateDriftCalculator``);
- realized performance, RMSE and MAE (``PerformanceCalculator``; we have labels).

One deliberate change to NannyML's drift thresholds: NannyML scores each reference chunk
against the whole reference, which contains that chunk, so reference values come out
biased low and a fresh sample of the same population alerts often (measured here: 19 % of
checks with five reference chunks). We score every reference chunk against the rest of the
reference instead (leave one chunk out), add ``_CALIBRATION_DRAWS`` random held-out chunks,
and set each threshold to NannyML's default rule, mean + 3 std, over those honest values
(false alerts then about 1 % of checks). The stored reference values are the held-out ones,
so the plot, the rows and the thresholds agree.

Results go to the SQL database at ``settings.drift_db_url`` (PostgreSQL in production,
SQLite in the embedded profile) in two tables that the Grafana dashboard reads:
``drift_metrics`` (one row per period, chunk, column and metric) and ``drift_runs`` (one row
per (analysis_commit, reference_commit, model_version)). A rerun of the same key replaces its
rows in one transaction. Every input is checked and every number computed before the
database is touched.

Chunk times: NannyML chunks here by size, not time. For the dashboard each period's chunks
are spread evenly from its time (``reference_time`` / ``analysis_time``) over a month, or
over the gap between the two times when that is shorter, so the periods never overlap.
"""

from __future__ import annotations

import html
import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from pawpaw.config import Settings
from pawpaw.data.image_stats import STAT_COLUMNS
from pawpaw.schema import ID, TARGET

__all__ = [
    "DRIFT_COLUMNS",
    "DRIFT_METRICS",
    "DRIFT_RUNS",
    "INPUT_COLUMNS",
    "METHODS",
    "PERFORMANCE",
    "PERFORMANCE_METRICS",
    "PREDICTION",
    "DriftError",
    "DriftResult",
    "measure_drift",
    "read_drift_runs",
]

log = logging.getLogger(__name__)

PREDICTION = "prediction"
PERFORMANCE = "performance"  # the column_name of realized-performance rows
DRIFT_COLUMNS: tuple[str, ...] = (PREDICTION, *STAT_COLUMNS)
INPUT_COLUMNS: tuple[str, ...] = (ID, PREDICTION, TARGET, *STAT_COLUMNS)
METHODS: tuple[str, ...] = ("jensen_shannon", "kolmogorov_smirnov")
PERFORMANCE_METRICS: tuple[str, ...] = ("rmse", "mae")

# Chunking: aim for ~10 reference and >= 5 analysis chunks; a distance between
# distributions of fewer than 10 points means nothing; a threshold needs >= 3 chunks.
_MIN_CHUNK_SIZE = 10
_TARGET_REFERENCE_CHUNKS = 10
_TARGET_ANALYSIS_CHUNKS = 5
_MIN_REFERENCE_CHUNKS = 3
_CALIBRATION_DRAWS = 30
_CALIBRATION_SEED = 20211  # fixed: the same inputs always give the same rows
_PERIOD_SPAN = timedelta(days=30)

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


class DriftError(ValueError):
    """Bad input to a drift measurement; nothing was written."""


@dataclass(frozen=True)
class DriftResult:
    """What one :func:`measure_drift` call wrote (small and JSON-friendly: it goes through XCom)."""

    analysis_commit: str
    reference_commit: str
    model_version: str
    chunk_size: int
    n_reference: int
    n_analysis: int
    rows_written: int  # rows in drift_metrics for this key
    n_alerts: int  # alerts in the analysis period, drift and performance
    drifted_columns: tuple[str, ...]  # column_name values with an analysis alert
    rmse_reference: float
    rmse_analysis: float
    report_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["drifted_columns"] = list(self.drifted_columns)
        return out


def measure_drift(
    settings: Settings,
    *,
    reference: pd.DataFrame,
    analysis: pd.DataFrame,
    reference_commit: str,
    analysis_commit: str,
    model_version: str,
    reference_time: datetime,
    analysis_time: datetime,
    chunk_size: int | None = None,
    report_path: str | os.PathLike[str] | None = None,
) -> DriftResult:
    """Measure drift of ``analysis`` against ``reference`` and store it (replacing a rerun).

    Both frames need ``INPUT_COLUMNS``. ``chunk_size`` defaults to a tenth of the reference
    or a fifth of the analysis, whichever is smaller, and at least 10 rows; the reference
    needs 3 chunks, the analysis 1. With ``report_path`` the NannyML drift and
    performance plots are also written there as one self-contained HTML page.
    Raises :class:`DriftError` on bad input, before anything is written.
    """
    for name, value in (
        ("reference_commit", reference_commit),
        ("analysis_commit", analysis_commit),
        ("model_version", model_version),
    ):
        if not isinstance(value, str) or not value.strip():
            raise DriftError(f"{name} must be a non-empty string, got {value!r}")
    ref = _checked_frame(reference, "reference")
    ana = _checked_frame(analysis, "analysis")
    size = _chunk_size(len(ref), len(ana), chunk_size)
    ref_time = _naive_utc(reference_time, "reference_time")
    ana_time = _naive_utc(analysis_time, "analysis_time")
    log.info(
        "drift: %s vs %s (model %s): %d reference rows, %d analysis rows, chunks of %d",
        analysis_commit,
        reference_commit,
        model_version,
        len(ref),
        len(ana),
        size,
    )

    drift, performance = _calculate(ref, ana, size)
    span = _period_span(ref_time, ana_time)
    rows = [
        *_metric_rows(_drift_records(drift), ref_time, ana_time, span),
        *_metric_rows(_performance_records(performance), ref_time, ana_time, span),
    ]
    # One drift run per (analysis, reference) pair: re-measuring it, with the same champion or
    # a newer one (a month rerun after a promotion), replaces its rows instead of adding a set.
    key = {"analysis_commit": analysis_commit, "reference_commit": reference_commit}
    rows = [{**key, "model_version": model_version, **row} for row in rows]
    alerts = [r for r in rows if r["period"] == "analysis" and r["alert"]]
    drifted = tuple(dict.fromkeys(r["column_name"] for r in alerts))  # first-seen order
    run = {
        **key,
        "model_version": model_version,
        "timestamp": ana_time,
        "n_reference": len(ref),
        "n_analysis": len(ana),
        "n_alerts": len(alerts),
        "drifted_columns": ",".join(drifted),
        "rmse_reference": _rmse(ref),
        "rmse_analysis": _rmse(ana),
    }
    page = None
    if report_path is not None:
        log.info("drift: rendering the HTML report")
        page = _report_html(drift, performance, run)

    _replace_rows(settings.drift_db_url, key, rows, run)
    log.info("drift: wrote %d rows, %d alerts (%s)", len(rows), len(alerts), run["drifted_columns"])
    if page is not None:
        _write_atomic(Path(report_path), page)
    return DriftResult(
        analysis_commit=analysis_commit,
        reference_commit=reference_commit,
        model_version=model_version,
        chunk_size=size,
        n_reference=len(ref),
        n_analysis=len(ana),
        rows_written=len(rows),
        n_alerts=len(alerts),
        drifted_columns=drifted,
        rmse_reference=run["rmse_reference"],
        rmse_analysis=run["rmse_analysis"],
        report_path=str(report_path) if report_path is not None else None,
    )


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


# --- input checks ---------------------------------------------------------------------------


def _checked_frame(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The input columns of ``frame`` as a fresh 0..n-1 indexed copy, or a DriftError."""
    if not isinstance(frame, pd.DataFrame):
        raise DriftError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise DriftError(f"{name} frame lacks columns {missing} (needs {list(INPUT_COLUMNS)})")
    if frame.empty:
        raise DriftError(f"{name} frame has no rows")
    out = frame.loc[:, list(INPUT_COLUMNS)].reset_index(drop=True)
    ids = out[ID]
    if ids.isna().any():
        raise DriftError(f"{name} frame: {int(ids.isna().sum())} rows have no {ID}")
    duplicated = ids[ids.duplicated()].astype(str).unique().tolist()
    if duplicated:
        raise DriftError(f"{name} frame: duplicate {ID}s {_some(duplicated)}")
    for column in INPUT_COLUMNS[1:]:
        values = out[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise DriftError(f"{name} frame: column {column!r} is {values.dtype}, not numeric")
        values = values.astype("float64")
        bad = ~np.isfinite(values.to_numpy())
        if bad.any():
            raise DriftError(
                f"{name} frame: column {column!r} has {int(bad.sum())} NaN/infinite values "
                f"(Ids {_some(ids[bad].astype(str).tolist())})"
            )
        out[column] = values
    out[ID] = ids.astype(str)
    return out


def _chunk_size(n_reference: int, n_analysis: int, chunk_size: int | None) -> int:
    if chunk_size is None:
        size = max(
            _MIN_CHUNK_SIZE,
            min(n_reference // _TARGET_REFERENCE_CHUNKS, n_analysis // _TARGET_ANALYSIS_CHUNKS),
        )
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer):
        raise DriftError(f"chunk_size must be an integer, got {chunk_size!r}")
    elif chunk_size < _MIN_CHUNK_SIZE:
        raise DriftError(f"chunk_size must be >= {_MIN_CHUNK_SIZE}, got {chunk_size}")
    else:
        size = int(chunk_size)
    if n_reference < _MIN_REFERENCE_CHUNKS * size:
        raise DriftError(
            f"reference frame has {n_reference} rows: thresholds need at least "
            f"{_MIN_REFERENCE_CHUNKS} chunks of {size} rows ({_MIN_REFERENCE_CHUNKS * size} rows)"
        )
    if n_analysis < size:
        raise DriftError(
            f"analysis frame has {n_analysis} rows: fewer than one chunk of {size} rows"
        )
    return size


def _naive_utc(value: datetime, name: str) -> datetime:
    """TIMESTAMP columns hold naive UTC; aware times are converted, naive ones taken as UTC."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        raise DriftError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _some(items: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


# --- NannyML ----------------------------------------------------------------------------------


def _nannyml() -> Any:
    # NannyML sends usage statistics unless this is set before its first import.
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
    import nannyml

    return nannyml


def _calculate(reference: pd.DataFrame, analysis: pd.DataFrame, size: int) -> tuple[Any, Any]:
    """NannyML drift and performance results (reference and analysis periods)."""
    nml = _nannyml()
    from nannyml.chunk import SizeBasedChunker
    from nannyml.thresholds import StandardDeviationThreshold

    def chunker() -> Any:
        # 'append': the leftover rows join the last chunk instead of forming a tiny one.
        return SizeBasedChunker(chunk_size=size, incomplete="append")

    # RMSE/MAE below the usual range is good news, not an alert: upper thresholds only.
    upper_only = {
        m: StandardDeviationThreshold(std_lower_multiplier=None) for m in PERFORMANCE_METRICS
    }
    with warnings.catch_warnings():
        # NannyML also scores the reference against itself, where Jensen-Shannon takes the
        # square root of a rounding error below zero: noise. Real failures show up as NaN
        # values, which _records refuses to store.
        warnings.simplefilter("ignore", RuntimeWarning)
        drift = (
            nml.UnivariateDriftCalculator(
                column_names=list(DRIFT_COLUMNS),
                treat_as_numerical=list(DRIFT_COLUMNS),  # width/height are integers
                continuous_methods=list(METHODS),
                chunker=chunker(),
            )
            .fit(reference)
            .calculate(analysis)
        )
        log.info("drift: calibrating thresholds on held-out reference chunks")
        _calibrate(drift, reference, size)
        performance = (
            nml.PerformanceCalculator(
                problem_type="regression",
                metrics=list(PERFORMANCE_METRICS),
                y_true=TARGET,
                y_pred=PREDICTION,
                thresholds=upper_only,
                chunker=chunker(),
            )
            .fit(reference)
            .calculate(analysis)
        )
    return drift, performance


def _calibrate(drift: Any, reference: pd.DataFrame, size: int) -> None:
    """Replace NannyML's in-sample reference values, thresholds and alerts (module docstring)."""
    from nannyml.thresholds import StandardDeviationThreshold

    data = drift.data
    is_reference = (data[("chunk", "chunk", "period")] == "reference").to_numpy()
    starts = data.loc[is_reference, ("chunk", "chunk", "start_index")].astype(int)
    ends = data.loc[is_reference, ("chunk", "chunk", "end_index")].astype(int)
    n = len(reference)
    rng = np.random.default_rng(_CALIBRATION_SEED)
    held_out = [np.arange(s, e + 1) for s, e in zip(starts, ends, strict=True)]
    held_out += [np.sort(rng.permutation(n)[:size]) for _ in range(_CALIBRATION_DRAWS)]
    masks = []
    for rows in held_out:
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        masks.append(mask)
    rule = StandardDeviationThreshold(std_lower_multiplier=None)  # NannyML's default rule
    with warnings.catch_warnings():
        # One chunk per fit is the point here; NannyML warns that it is "too low".
        warnings.simplefilter("ignore", UserWarning)
        for column in DRIFT_COLUMNS:
            for key in METHODS:
                _calibrate_one(data, is_reference, reference[column], key, masks, rule)


def _calibrate_one(
    data: pd.DataFrame,
    is_reference: np.ndarray,
    reference: pd.Series,
    key: str,
    masks: list[np.ndarray],
    rule: Any,
) -> None:
    """One column and method: held-out scores -> threshold -> alerts, written into ``data``."""
    from nannyml.chunk import CountBasedChunker
    from nannyml.drift.univariate.methods import FeatureType, MethodFactory
    from nannyml.thresholds import calculate_threshold_values

    column = str(reference.name)
    values = reference.to_numpy()
    scores, method = [], None
    for mask in masks:
        method = MethodFactory.create(
            key=key,
            feature_type=FeatureType.CONTINUOUS,
            chunker=CountBasedChunker(chunk_number=1),
            computation_params={},
            threshold=rule,
        )
        method.fit(pd.Series(values[~mask], name=column))
        scores.append(float(method.calculate(pd.Series(values[mask], name=column))))
    lower, upper = calculate_threshold_values(
        threshold=rule,
        data=np.asarray(scores),
        lower_threshold_value_limit=method.lower_threshold_value_limit,
        upper_threshold_value_limit=method.upper_threshold_value_limit,
    )
    data.loc[is_reference, (column, key, "value")] = scores[: int(is_reference.sum())]
    value = data[(column, key, "value")].astype(float)
    alert = np.zeros(len(data), dtype=bool)
    if lower is not None:
        alert |= (value < lower).to_numpy()
    if upper is not None:
        alert |= (value > upper).to_numpy()
    data[(column, key, "lower_threshold")] = lower
    data[(column, key, "upper_threshold")] = upper
    data[(column, key, "alert")] = alert


def _drift_records(drift: Any) -> list[dict[str, Any]]:
    return _records(drift.data, [(c, m, (c, m)) for c in DRIFT_COLUMNS for m in METHODS])


def _performance_records(performance: Any) -> list[dict[str, Any]]:
    data = performance.data.copy()
    # Performance results have two column levels, drift results three: align them.
    data.columns = pd.MultiIndex.from_tuples([(a, a, b) for a, b in data.columns])
    return _records(data, [(PERFORMANCE, m, (m, m)) for m in PERFORMANCE_METRICS])


def _records(
    data: pd.DataFrame, series: list[tuple[str, str, tuple[str, str]]]
) -> list[dict[str, Any]]:
    """Long rows (period, chunk_index, n_chunks, column_name, metric, value, thresholds, alert)."""
    period = data[("chunk", "chunk", "period")].astype(str).to_numpy()
    chunk_index = data[("chunk", "chunk", "chunk_index")].astype(int).to_numpy()
    n_chunks = {p: int((period == p).sum()) for p in ("reference", "analysis")}
    out = []
    for column_name, metric, (level0, level1) in series:
        for i in range(len(data)):
            value = _float_or_none(data[(level0, level1, "value")].iloc[i])
            if value is None:
                # NannyML logs and swallows per-chunk failures as NaN; we refuse to store them.
                raise DriftError(
                    f"NannyML gave no {metric} for {column_name!r} in {period[i]} chunk "
                    f"{chunk_index[i]} (see the log above)"
                )
            out.append(
                {
                    "period": period[i],
                    "chunk_index": int(chunk_index[i]),
                    "n_chunks": n_chunks[period[i]],
                    "column_name": column_name,
                    "metric": metric,
                    "value": value,
                    "lower_threshold": _float_or_none(
                        data[(level0, level1, "lower_threshold")].iloc[i]
                    ),
                    "upper_threshold": _float_or_none(
                        data[(level0, level1, "upper_threshold")].iloc[i]
                    ),
                    "alert": _is_true(data[(level0, level1, "alert")].iloc[i]),
                }
            )
    return out


def _is_true(value: Any) -> bool:
    # NannyML marks an alert it could not evaluate as NaN: that is not an alert.
    return isinstance(value, bool | np.bool_) and bool(value)


def _float_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _period_span(reference_time: datetime, analysis_time: datetime) -> timedelta:
    gap = analysis_time - reference_time
    return min(_PERIOD_SPAN, gap) if gap > timedelta(0) else _PERIOD_SPAN


def _metric_rows(
    records: list[dict[str, Any]],
    reference_time: datetime,
    analysis_time: datetime,
    span: timedelta,
) -> list[dict[str, Any]]:
    """Records with chunk_start/chunk_end/timestamp (the chunk's midpoint) filled in."""
    out = []
    for record in records:
        start_of_period = reference_time if record["period"] == "reference" else analysis_time
        step = span / record.pop("n_chunks")
        start = start_of_period + step * record["chunk_index"]
        out.append(
            {
                **record,
                "chunk_start": start,
                "chunk_end": start + step,
                "timestamp": start + step / 2,
            }
        )
    return out


def _rmse(frame: pd.DataFrame) -> float:
    error = frame[PREDICTION].to_numpy() - frame[TARGET].to_numpy()
    return float(np.sqrt(np.mean(error**2)))


# --- output -----------------------------------------------------------------------------------


def _sqlite_file(url: sa.engine.URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def _replace_rows(
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


def _report_html(drift: Any, performance: Any, run: dict[str, Any]) -> str:
    title = (
        f"Drift of {run['analysis_commit']} against {run['reference_commit']} "
        f"(model {run['model_version']})"
    )
    summary = (
        f"{run['n_reference']} reference rows, {run['n_analysis']} analysis rows; "
        f"RMSE {run['rmse_reference']:.2f} -> {run['rmse_analysis']:.2f}; "
        f"{run['n_alerts']} alerts in the analysis period"
        + (f" on: {run['drifted_columns']}" if run["drifted_columns"] else "")
    )
    # plotly.js is inlined once so the page works offline (e.g. as an MLflow artifact).
    performance_div = performance.plot().to_html(full_html=False, include_plotlyjs=True)
    drift_div = drift.plot(kind="drift").to_html(full_html=False, include_plotlyjs=False)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(summary)}</p>\n"
        f"<h2>Realized performance</h2>\n{performance_div}\n"
        f"<h2>Univariate drift</h2>\n{drift_div}\n</body></html>\n"
    )


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
