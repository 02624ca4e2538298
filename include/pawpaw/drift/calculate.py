"""The measurement itself: NannyML's calculators, the threshold calibration, the long rows.

Measured, in chunks of ``size`` rows (several per split, so thresholds exist):

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

Chunk times: NannyML chunks here by size, not time. For the dashboard each period's chunks
are spread evenly from its time (``reference_time`` / ``analysis_time``) over a month, or
over the gap between the two times when that is shorter, so the periods never overlap.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from pawpaw.data.image_stats import STAT_COLUMNS
from pawpaw.drift.inputs import PREDICTION, DriftError
from pawpaw.schema import TARGET

__all__ = [
    "DRIFT_COLUMNS",
    "METHODS",
    "PERFORMANCE",
    "PERFORMANCE_METRICS",
    "calculate",
    "drift_records",
    "metric_rows",
    "performance_records",
    "period_span",
]

log = logging.getLogger(__name__)

PERFORMANCE = "performance"  # the column_name of realized-performance rows
DRIFT_COLUMNS: tuple[str, ...] = (PREDICTION, *STAT_COLUMNS)
METHODS: tuple[str, ...] = ("jensen_shannon", "kolmogorov_smirnov")
PERFORMANCE_METRICS: tuple[str, ...] = ("rmse", "mae")

_CALIBRATION_DRAWS = 30
_CALIBRATION_SEED = 20211  # fixed: the same inputs always give the same rows
_PERIOD_SPAN = timedelta(days=30)


def _nannyml() -> Any:
    # NannyML sends usage statistics unless this is set before its first import.
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
    import nannyml

    return nannyml


def calculate(reference: pd.DataFrame, analysis: pd.DataFrame, size: int) -> tuple[Any, Any]:
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


# --- calibration (module docstring) ---------------------------------------------------------------


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


# --- long rows ------------------------------------------------------------------------------------


def drift_records(drift: Any) -> list[dict[str, Any]]:
    """The drift results as long rows, see :func:`_records`."""
    return _records(drift.data, [(c, m, (c, m)) for c in DRIFT_COLUMNS for m in METHODS])


def performance_records(performance: Any) -> list[dict[str, Any]]:
    """The realized-performance results as long rows, see :func:`_records`."""
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


def period_span(reference_time: datetime, analysis_time: datetime) -> timedelta:
    """How long each period's chunks are spread over (module docstring, chunk times)."""
    gap = analysis_time - reference_time
    return min(_PERIOD_SPAN, gap) if gap > timedelta(0) else _PERIOD_SPAN


def metric_rows(
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
