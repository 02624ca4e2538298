"""One drift measurement, end to end: check, project, test, estimate, store, report.

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
    chunk_records,
    chunk_results,
    estimate_month,
    multivariate_tests,
)
from pawpaw.drift.embeddings import component_columns, project
from pawpaw.drift.inputs import (
    MONITORED_STATS,
    PREDICTION,
    DriftError,
    checked_frame,
    chunk_size_for,
    month_start,
)
from pawpaw.drift.report import report_html, write_atomic
from pawpaw.drift.store import KEY_COLUMNS, replace_rows
from pawpaw.drift.verdict import holm, reasons, univariate_tests
from pawpaw.metrics import mae, rmse
from pawpaw.progress import say
from pawpaw.schema import TARGET

__all__ = ["DriftResult", "measure_drift"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftResult:
    """What one :func:`measure_drift` call found and wrote (JSON-friendly: it goes through XCom)."""

    analysis_commit: str
    reference_commit: str
    model_version: str
    month: str  # YYYY-MM
    alert: bool  # the month's verdict
    reasons: tuple[str, ...]  # what alerted, smallest p-value first
    n_reference: int
    n_analysis: int
    rmse_reference: float
    rmse_analysis: float  # realized
    mae_analysis: float
    estimated_rmse: float  # NannyML DLE, labels unused
    estimated_mae: float
    estimate_error: float  # |estimated - realized| / realized RMSE
    rmse_limit: float | None  # the RMSE the pipeline retrains above (None: not given)
    tests: tuple[dict[str, Any], ...]  # every month-level test (MonthTest.to_dict)
    chunk_size: int
    rows_written: int  # drift_metrics rows of this run
    report_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        out["tests"] = list(self.tests)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftResult:
        return cls(**{**data, "reasons": tuple(data["reasons"]), "tests": tuple(data["tests"])})

    def summary(self) -> str:
        verdict = "ALERT: " + "; ".join(self.reasons) if self.alert else "no drift alert"
        limit = f" (limit {self.rmse_limit:.2f})" if self.rmse_limit is not None else ""
        return (
            f"{self.month} v{self.model_version}: {verdict}; RMSE estimated "
            f"{self.estimated_rmse:.2f}{limit}, realized {self.rmse_analysis:.2f} "
            f"({self.estimate_error:.0%} apart), reference {self.rmse_reference:.2f}"
        )


def _next_month(month: datetime) -> datetime:
    return datetime(month.year + month.month // 12, month.month % 12 + 1, 1)


def measure_drift(
    settings: Settings,
    *,
    reference: pd.DataFrame,
    analysis: pd.DataFrame,
    reference_commit: str,
    analysis_commit: str,
    model_version: str,
    month: datetime | str,
    rmse_limit: float | None = None,
    alpha: float | None = None,
    chunk_size: int | None = None,
    report_path: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> DriftResult:
    """Measure ``analysis`` (the month) against ``reference`` and store it, replacing a rerun.

    Both frames need ``INPUT_COLUMNS`` and the embedding columns. ``month`` is the month
    analysed (the time axis); ``alpha`` the family-wise false-alarm rate of the verdict
    (default ``settings.drift_alpha``); ``chunk_size`` (plots only) defaults to a tenth of the
    reference or a fifth of the month, at least 10 rows. With ``report_path`` NannyML's plots
    are also written there as one self-contained HTML page.
    Raises :class:`DriftError` on bad input, before anything is written.
    """
    for name, value in (
        ("reference_commit", reference_commit),
        ("analysis_commit", analysis_commit),
        ("model_version", model_version),
    ):
        if not isinstance(value, str) or not value.strip():
            raise DriftError(f"{name} must be a non-empty string, got {value!r}")
    alpha = settings.drift_alpha if alpha is None else alpha
    if not 0 < alpha < 1:
        raise DriftError(f"alpha must be in (0, 1), got {alpha}")
    if rmse_limit is not None and not rmse_limit > 0:
        raise DriftError(f"rmse_limit must be > 0, got {rmse_limit}")
    start = month_start(month)
    ref, ana = project(checked_frame(reference, "reference"), checked_frame(analysis, "analysis"))
    size = chunk_size_for(len(ref), len(ana), chunk_size)
    features = [*component_columns(), *MONITORED_STATS]
    features = [c for c in features if c in ref.columns]
    say(
        progress,
        f"drift: {analysis_commit[:12]} ({start:%Y-%m}) against {reference_commit[:12]}, model "
        f"v{model_version}: {len(ref)} reference rows, {len(ana)} rows",
    )

    tests = holm([*univariate_tests(ref, ana), *multivariate_tests(ref, ana, features)], alpha)
    estimate = estimate_month(ref, ana, features)
    results = chunk_results(ref, ana, features, size)
    chunks = chunk_records(results, start, _next_month(start))

    why = reasons(tests)
    realized = rmse(ana[TARGET], ana[PREDICTION])
    run = {
        "analysis_commit": analysis_commit,
        "reference_commit": reference_commit,
        "model_version": model_version,
        "month": start,
        "n_reference": len(ref),
        "n_analysis": len(ana),
        "alert": any(t.alert for t in tests),
        "reasons": "; ".join(why),
        "rmse_reference": rmse(ref[TARGET], ref[PREDICTION]),
        "rmse_analysis": realized,
        "mae_analysis": mae(ana[TARGET], ana[PREDICTION]),
        **estimate,
        "estimate_error": abs(estimate["estimated_rmse"] - realized) / realized
        if realized
        else 0.0,
        "rmse_limit": rmse_limit,
    }
    key = {name: run[name] for name in KEY_COLUMNS}
    keyed = {**key, "month": start}
    test_rows = [
        {
            **keyed,
            "method": t.method,
            "column_name": t.column,
            "statistic": t.statistic,
            "p_value": t.p_value,
            "alpha": t.alpha,
            "alert": t.alert,
        }
        for t in tests
    ]
    metric_rows = [{**keyed, **row} for row in chunks]
    page = report_html(results, run, tests) if report_path is not None else None

    replace_rows(settings.drift_db_url, key, run, test_rows, metric_rows)
    if page is not None:
        write_atomic(Path(report_path), page)
    result = DriftResult(
        **{k: v for k, v in run.items() if k not in ("month", "reasons")},
        month=f"{start:%Y-%m}",
        reasons=tuple(why),
        tests=tuple(t.to_dict() for t in tests),
        chunk_size=size,
        rows_written=len(metric_rows),
        report_path=str(report_path) if report_path is not None else None,
    )
    say(progress, f"drift: {result.summary()}")
    return result
