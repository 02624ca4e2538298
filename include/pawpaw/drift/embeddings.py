"""The frozen backbone's embeddings, reduced for drift: principal components of both periods.

Drift methods cannot work in 1,000+ dimensions on a few hundred rows, so the embeddings are
projected onto the ``N_COMPONENTS`` leading principal axes of the reference and the month
*together*. Not of the reference alone: with far more dimensions than rows, the rows a PCA is
fitted on spread wider along its axes than new rows do, so a domain classifier tells any new
month from the reference by that alone (measured: a calm month alerted with AUROC 0.57).
Fitted on both periods, the two are treated alike, a calm month's rows are exchangeable with
the reference's and the tests keep their false-alarm rate; a shift adds variance along its own
direction, which then becomes one of the axes. Signs are fixed (the largest loading of each
axis is positive) so the same inputs always give the same columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pawpaw.drift.inputs import DriftError, embedding_columns

__all__ = ["COMPONENT_PREFIX", "N_COMPONENTS", "component_columns", "project"]

N_COMPONENTS = 16
COMPONENT_PREFIX = "pc_"


def component_columns(n: int = N_COMPONENTS) -> list[str]:
    return [f"{COMPONENT_PREFIX}{i + 1}" for i in range(n)]


def project(
    reference: pd.DataFrame, analysis: pd.DataFrame, n_components: int = N_COMPONENTS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames with their embedding columns replaced by the principal components of
    both together (``pc_1`` ...); raises DriftError when the embeddings do not match."""
    ref_cols, ana_cols = embedding_columns(reference), embedding_columns(analysis)
    if len(ref_cols) != len(ana_cols):
        raise DriftError(
            f"reference embeddings have {len(ref_cols)} dimensions, analysis {len(ana_cols)}: "
            "both must come from the same backbone"
        )
    both = np.vstack(
        [reference[ref_cols].to_numpy(np.float64), analysis[ana_cols].to_numpy(np.float64)]
    )
    k = min(n_components, len(ref_cols), len(both) - 1)
    mean = both.mean(axis=0)
    _, _, vt = np.linalg.svd(both - mean, full_matrices=False)
    axes = vt[:k]
    axes *= np.sign(axes[np.arange(k), np.abs(axes).argmax(axis=1)])[:, None]
    names = component_columns(k)

    def reduced(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
        scores = (frame[cols].to_numpy(np.float64) - mean) @ axes.T
        kept = frame.drop(columns=cols)
        return pd.concat([kept, pd.DataFrame(scores, columns=names, index=frame.index)], axis=1)

    return reduced(reference, ref_cols), reduced(analysis, ana_cols)
