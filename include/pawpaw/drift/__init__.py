"""Drift: how one month's test split differs from an earlier one, measured with NannyML.

Inputs are two frames with one row per test image (``Id``, the model's ``prediction``, the
label ``Pawpularity`` and the photo statistics of :mod:`pawpaw.data.image_stats`): the reference
(an earlier commit) and the analysis (the new commit), both scored by the same model version.
Drift of the prediction and every photo statistic, and realized RMSE/MAE, are measured chunk
by chunk, with thresholds calibrated on held-out reference chunks, and stored in the tables
``drift_metrics`` and ``drift_runs`` that the Grafana dashboard reads.

What lives where (imports flow down this list, never up):

- :mod:`pawpaw.drift.measure`: :func:`measure_drift`, the one entry point, and
  :class:`DriftResult`, what it wrote;
- :mod:`pawpaw.drift.report`: the self-contained HTML report and its atomic write;
- :mod:`pawpaw.drift.store`: the ``drift_metrics`` / ``drift_runs`` tables, replacing a run's
  rows in one transaction, :func:`read_drift_runs`;
- :mod:`pawpaw.drift.calculate`: NannyML's calculators, the threshold calibration on held-out
  reference chunks, the long rows and their chunk times; ``DRIFT_COLUMNS``, ``METHODS``,
  ``PERFORMANCE``, ``PERFORMANCE_METRICS``;
- :mod:`pawpaw.drift.inputs`: ``INPUT_COLUMNS``, ``PREDICTION``, :class:`DriftError` and the
  input checks.

RMSE comes from :mod:`pawpaw.metrics`, the one home of the regression metrics.
"""

from __future__ import annotations

from pawpaw.drift.calculate import DRIFT_COLUMNS, METHODS, PERFORMANCE, PERFORMANCE_METRICS
from pawpaw.drift.inputs import INPUT_COLUMNS, PREDICTION, DriftError
from pawpaw.drift.measure import DriftResult, measure_drift
from pawpaw.drift.store import DRIFT_METRICS, DRIFT_RUNS, read_drift_runs

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
