"""NannyML's calculators on one month: the embedding tests, estimated performance, the chunks.

Month level (the verdict and the stored estimate), on the embeddings' principal components
(:mod:`pawpaw.drift.embeddings`: fitted on both periods alike) plus the photo statistics:

- ``data_reconstruction``: ``DataReconstructionDriftCalculator`` fitted on a random half of the
  reference; its mean reconstruction error on the other half and on the month (both out of
  sample) are compared with a one-sided z-test on NannyML's sampling errors;
- ``domain_classifier``: ``DomainClassifierCalculator`` (cross-validated LightGBM telling the
  month from the reference); its AUROC is tested against 0.5 with the Mann-Whitney standard
  error sqrt((n1 + n2 + 1) / (12 n1 n2));
- estimated RMSE and MAE: ``DLE`` fitted on the whole reference (features, flags and prediction
  -> loss), applied to the month without its labels.

Chunk level (the plots): the univariate statistics, the reconstruction error, realized and
estimated RMSE/MAE per analysis chunk; only the estimated performance carries NannyML's
thresholds (from the reference's chunks).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from pawpaw.drift.inputs import PREDICTION, DriftError
from pawpaw.drift.verdict import CONTINUOUS, MonthTest
from pawpaw.schema import FLAGS, TARGET

__all__ = [
    "EMBEDDINGS",
    "PERFORMANCE",
    "PERFORMANCE_METRICS",
    "chunk_records",
    "chunk_results",
    "estimate_month",
    "multivariate_tests",
]

log = logging.getLogger(__name__)

EMBEDDINGS = "embeddings"  # the column_name of the multivariate methods' rows
PERFORMANCE = "performance"  # the column_name of realized and estimated performance rows
PERFORMANCE_METRICS: tuple[str, ...] = ("rmse", "mae")
_SEED = 20211  # fixed: the same inputs always give the same numbers
# LightGBM's defaults as NannyML uses them, made quiet, single-threaded and seeded.
_LIGHTGBM = {
    "n_estimators": 100,
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_child_samples": 20,
    "verbose": -1,
    "random_state": _SEED,
    "n_jobs": 1,
}


def _nannyml() -> Any:
    # NannyML sends usage statistics unless this is set before its first import.
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
    import nannyml

    return nannyml


def _one_chunk() -> Any:
    from nannyml.chunk import CountBasedChunker

    return CountBasedChunker(chunk_number=1)


def _by_size(size: int) -> Any:
    from nannyml.chunk import SizeBasedChunker

    # 'append': the leftover rows join the last chunk instead of forming a tiny one.
    return SizeBasedChunker(chunk_size=size, incomplete="append")


def _analysis(result: Any) -> pd.DataFrame:
    return result.filter(period="analysis").to_df()


def multivariate_tests(
    reference: pd.DataFrame, analysis: pd.DataFrame, features: list[str]
) -> list[MonthTest]:
    """The month-level embedding tests (module docstring)."""
    from scipy import stats

    nml = _nannyml()
    half = np.random.default_rng(_SEED).permutation(len(reference)) < len(reference) // 2
    fitted, held_out = reference[half], reference[~half]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NannyML: "too few chunks" for one-chunk fits
        dre = nml.DataReconstructionDriftCalculator(
            column_names=features, chunker=_one_chunk()
        ).fit(fitted)
        base = _analysis(dre.calculate(held_out))["reconstruction_error"].iloc[0]
        month = _analysis(dre.calculate(analysis))["reconstruction_error"].iloc[0]
        z = (month["value"] - base["value"]) / math.hypot(
            month["sampling_error"], base["sampling_error"]
        )
        domain = nml.DomainClassifierCalculator(
            feature_column_names=features,
            chunker=_one_chunk(),
            hyperparameters=_LIGHTGBM,
        ).fit(reference)
        auroc = float(
            _analysis(domain.calculate(analysis))[("domain_classifier_auroc", "value")].iloc[0]
        )
    n1, n2 = len(reference), len(analysis)
    se = math.sqrt((n1 + n2 + 1) / (12 * n1 * n2))
    return [
        MonthTest(
            "data_reconstruction", EMBEDDINGS, float(month["value"]), float(stats.norm.sf(z))
        ),
        MonthTest("domain_classifier", EMBEDDINGS, auroc, float(stats.norm.sf((auroc - 0.5) / se))),
    ]


def _dle(reference: pd.DataFrame, features: list[str], chunker: Any) -> Any:
    nml = _nannyml()
    return nml.DLE(
        feature_column_names=[*features, *FLAGS],
        y_pred=PREDICTION,
        y_true=TARGET,
        metrics=list(PERFORMANCE_METRICS),
        chunker=chunker,
        hyperparameters=_LIGHTGBM,
    ).fit(reference)


def estimate_month(
    reference: pd.DataFrame, analysis: pd.DataFrame, features: list[str]
) -> dict[str, float]:
    """NannyML DLE's estimated RMSE and MAE of the whole month (its labels unused)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = _analysis(
            _dle(reference, features, _one_chunk()).estimate(analysis.drop(columns=[TARGET]))
        )
    out = {f"estimated_{m}": float(data[(m, "value")].iloc[0]) for m in PERFORMANCE_METRICS}
    if not all(math.isfinite(v) for v in out.values()):
        raise DriftError(f"NannyML DLE gave no estimate for the month: {out}")
    return out


def chunk_results(
    reference: pd.DataFrame, analysis: pd.DataFrame, features: list[str], size: int
) -> dict[str, Any]:
    """NannyML's results per chunk of ``size`` rows: univariate, reconstruction, performance."""
    nml = _nannyml()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        univariate = nml.UnivariateDriftCalculator(
            column_names=[*CONTINUOUS, *FLAGS],
            treat_as_numerical=list(CONTINUOUS),
            treat_as_categorical=list(FLAGS),
            continuous_methods=["kolmogorov_smirnov"],
            categorical_methods=["chi2"],
            chunker=_by_size(size),
        ).fit(reference)
        reconstruction = nml.DataReconstructionDriftCalculator(
            column_names=features, chunker=_by_size(size)
        ).fit(reference)
        return {
            "univariate": univariate.calculate(analysis),
            "reconstruction": reconstruction.calculate(analysis),
            "performance": _dle(reference, features, _by_size(size)).estimate(analysis),
        }


def chunk_records(
    results: dict[str, Any], month: datetime, month_end: datetime
) -> list[dict[str, Any]]:
    """Long rows, one per analysis chunk, column and metric, spread evenly over the month."""
    univariate = _analysis(results["univariate"])
    reconstruction = _analysis(results["reconstruction"])
    performance = _analysis(results["performance"])
    n = len(univariate)
    step = (month_end - month) / n
    out: list[dict[str, Any]] = []

    def add(i: int, column: str, metric: str, value: Any, lower=None, upper=None, alert=False):
        number = _finite(value)
        if number is None:
            # NannyML logs and swallows per-chunk failures as NaN; we refuse to store them.
            raise DriftError(f"NannyML gave no {metric} for {column!r} in analysis chunk {i}")
        start = month + step * i
        out.append(
            {
                "chunk_index": i,
                "chunk_start": start,
                "chunk_end": start + step,
                "timestamp": start + step / 2,
                "column_name": column,
                "metric": metric,
                "value": number,
                "lower_threshold": _finite(lower),
                "upper_threshold": _finite(upper),
                "alert": _is_true(alert),
            }
        )

    for i in range(n):
        for column in CONTINUOUS:
            add(
                i,
                column,
                "kolmogorov_smirnov",
                univariate[(column, "kolmogorov_smirnov", "value")].iloc[i],
            )
        for flag in FLAGS:
            add(i, flag, "chi2", univariate[(flag, "chi2", "value")].iloc[i])
        add(
            i,
            EMBEDDINGS,
            "reconstruction_error",
            reconstruction[("reconstruction_error", "value")].iloc[i],
        )
        for m in PERFORMANCE_METRICS:
            row = performance[m].iloc[i]
            add(i, PERFORMANCE, m, row["realized"])
            add(
                i,
                PERFORMANCE,
                f"estimated_{m}",
                row["value"],
                row["lower_threshold"],
                row["upper_threshold"],
                row["alert"],
            )
    return out


def _is_true(value: Any) -> bool:
    # NannyML marks an alert it could not evaluate as NaN: that is not an alert.
    return isinstance(value, bool | np.bool_) and bool(value)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
