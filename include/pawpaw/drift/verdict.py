"""The month's verdict: one alert or none, with the reasons, at a controlled false-alarm rate.

Every check on the whole month is a hypothesis test with a p-value (``MonthTest``):

- each monitored column once: the prediction, the label ``Pawpularity`` and the photo
  statistics with the two-sample Kolmogorov-Smirnov test, each of the twelve flags (0/1) with
  the chi-squared test of its share;
- the embedding methods of :mod:`pawpaw.drift.calculate` (reconstruction error, domain
  classifier), which add their own p-values.

:func:`holm` then holds the family to ``alpha`` (Holm-Bonferroni: the smallest p-value is
compared with alpha/m, the next with alpha/(m-1), ... until one is not significant): the chance
that a calm month raises any alert stays at or below ``alpha`` however many tests there are.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from pawpaw.drift.inputs import MONITORED_STATS, PREDICTION, DriftError
from pawpaw.schema import FLAGS, TARGET

__all__ = ["CONTINUOUS", "MonthTest", "holm", "reasons", "univariate_tests"]

CONTINUOUS: tuple[str, ...] = (PREDICTION, TARGET, *MONITORED_STATS)


@dataclass(frozen=True)
class MonthTest:
    """One test of the whole month against the reference."""

    method: str  # kolmogorov_smirnov | chi2 | data_reconstruction | domain_classifier
    column: str  # the column tested, or "embeddings"
    statistic: float
    p_value: float
    alpha: float = math.nan  # the Holm-adjusted level it was held to (set by holm)
    alert: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def reason(self) -> str:
        return f"{self.column} ({self.method} {self.statistic:.3g}, p={self.p_value:.2g})"


def univariate_tests(reference: pd.DataFrame, analysis: pd.DataFrame) -> list[MonthTest]:
    """One test per monitored column (module docstring)."""
    from scipy import stats

    out = []
    for column in CONTINUOUS:
        ks = stats.ks_2samp(
            reference[column].to_numpy(), analysis[column].to_numpy(), method="asymp"
        )
        out.append(MonthTest("kolmogorov_smirnov", column, float(ks.statistic), float(ks.pvalue)))
    for flag in FLAGS:
        ref, ana = reference[flag].to_numpy() > 0.5, analysis[flag].to_numpy() > 0.5
        table = np.array([[ref.sum(), (~ref).sum()], [ana.sum(), (~ana).sum()]])
        if (table.sum(axis=0) == 0).any():  # the flag is constant in both periods: no change
            out.append(MonthTest("chi2", flag, 0.0, 1.0))
            continue
        chi2 = stats.chi2_contingency(table, correction=False)
        out.append(MonthTest("chi2", flag, float(chi2.statistic), float(chi2.pvalue)))
    return out


def holm(tests: list[MonthTest], alpha: float) -> list[MonthTest]:
    """The tests (same order) with their Holm-adjusted levels and alerts (module docstring);
    ``alpha`` in (0, 1) is the caller's to check (:func:`pawpaw.drift.measure_drift` does)."""
    broken = [f"{t.column} ({t.method})" for t in tests if not 0 <= t.p_value <= 1]
    if broken:  # NaN included: a test that could not be computed is not a calm one
        raise DriftError(f"no p-value for {', '.join(broken)}: the test could not be computed")
    order = sorted(range(len(tests)), key=lambda i: tests[i].p_value)
    out = list(tests)
    rejecting = True
    for rank, i in enumerate(order):
        level = alpha / (len(tests) - rank)
        rejecting = rejecting and tests[i].p_value <= level
        out[i] = replace(tests[i], alpha=level, alert=rejecting)
    return out


def reasons(tests: list[MonthTest]) -> list[str]:
    """What alerted, smallest p-value first."""
    return [t.reason() for t in sorted((t for t in tests if t.alert), key=lambda t: t.p_value)]
