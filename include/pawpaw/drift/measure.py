"""One drift measurement, end to end: check the inputs, calculate, store, report.

Every input is checked and every number computed before the database is touched; the HTML
report, when asked for, is written only after the rows are stored.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pawpaw.config import Settings
from pawpaw.drift.calculate import (
    calculate,
    drift_records,
    metric_rows,
    performance_records,
    period_span,
)
from pawpaw.drift.inputs import (
    PREDICTION,
    DriftError,
    checked_frame,
    chunk_size_for,
    naive_utc,
)
from pawpaw.drift.report import report_html, write_atomic
from pawpaw.drift.store import replace_rows
from pawpaw.metrics import rmse
from pawpaw.schema import TARGET

__all__ = ["DriftResult", "measure_drift"]

log = logging.getLogger(__name__)


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
    ref = checked_frame(reference, "reference")
    ana = checked_frame(analysis, "analysis")
    size = chunk_size_for(len(ref), len(ana), chunk_size)
    ref_time = naive_utc(reference_time, "reference_time")
    ana_time = naive_utc(analysis_time, "analysis_time")
    log.info(
        "drift: %s vs %s (model %s): %d reference rows, %d analysis rows, chunks of %d",
        analysis_commit,
        reference_commit,
        model_version,
        len(ref),
        len(ana),
        size,
    )

    drift, performance = calculate(ref, ana, size)
    span = period_span(ref_time, ana_time)
    rows = [
        *metric_rows(drift_records(drift), ref_time, ana_time, span),
        *metric_rows(performance_records(performance), ref_time, ana_time, span),
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
        "rmse_reference": rmse(ref[TARGET], ref[PREDICTION]),
        "rmse_analysis": rmse(ana[TARGET], ana[PREDICTION]),
    }
    page = None
    if report_path is not None:
        log.info("drift: rendering the HTML report")
        page = report_html(drift, performance, run)

    replace_rows(settings.drift_db_url, key, rows, run)
    log.info("drift: wrote %d rows, %d alerts (%s)", len(rows), len(alerts), run["drifted_columns"])
    if page is not None:
        write_atomic(Path(report_path), page)
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
