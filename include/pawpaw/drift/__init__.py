"""Drift: how one month differs from the serving model's baseline, and what that costs.

Inputs are two frames with one row per test image (``Id``, the model's ``prediction``, the
label ``Pawpularity``, the twelve flags, the photo statistics of
:mod:`pawpaw.data.image_stats` and the frozen backbone's embedding): the reference (the test
split of the commit the serving model was trained on: fixed per model version) and the month,
both scored by that model. The result is one verdict per month (``alert`` and the reasons,
at a controlled false-alarm rate), NannyML's estimated RMSE/MAE beside the realized ones, and
per-chunk values for the plots, stored in ``drift_runs``, ``drift_tests`` and
``drift_metrics`` (Grafana reads them).

What lives where (imports flow down this list, never up):

- :mod:`pawpaw.drift.measure`: :func:`measure_drift`, the one entry point, and
  :class:`DriftResult`;
- :mod:`pawpaw.drift.report`: the self-contained HTML report and its atomic write;
- :mod:`pawpaw.drift.store`: the three tables, replacing a run's rows in one transaction;
- :mod:`pawpaw.drift.calculate`: NannyML's calculators (reconstruction error, domain
  classifier, DLE, the chunk statistics);
- :mod:`pawpaw.drift.verdict`: the month-level tests and their Holm correction;
- :mod:`pawpaw.drift.embeddings`: the embeddings' principal components;
- :mod:`pawpaw.drift.inputs`: the input columns, :class:`DriftError` and the input checks.
"""

from __future__ import annotations

from pawpaw.drift.calculate import EMBEDDINGS, PERFORMANCE, PERFORMANCE_METRICS
from pawpaw.drift.inputs import EMBEDDING_PREFIX, INPUT_COLUMNS, PREDICTION, DriftError
from pawpaw.drift.measure import DriftResult, measure_drift
from pawpaw.drift.store import (
    DRIFT_METRICS,
    DRIFT_RUNS,
    DRIFT_TESTS,
    read_drift_runs,
    read_drift_tests,
)
from pawpaw.drift.verdict import MonthTest

__all__ = [
    "DRIFT_METRICS",
    "DRIFT_RUNS",
    "DRIFT_TESTS",
    "EMBEDDINGS",
    "EMBEDDING_PREFIX",
    "INPUT_COLUMNS",
    "PERFORMANCE",
    "PERFORMANCE_METRICS",
    "PREDICTION",
    "DriftError",
    "DriftResult",
    "MonthTest",
    "measure_drift",
    "read_drift_runs",
    "read_drift_tests",
]
