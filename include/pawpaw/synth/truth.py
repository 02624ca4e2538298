"""The synthetic pool's ground truth, and the noise floor computed from it (its one home).

The noise floor is the best RMSE any model can reach: the RMSE between each row's noise-free
expected score (``noise_free`` in ``synth_truth.csv``) and its final score (``Pawpularity``).
The generator writes the pool's floor into ``synth.json``; a sample's splits have floors of
their own rows, which differ from the pool's by sampling noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pawpaw.metrics import rmse
from pawpaw.schema import ID, TARGET

__all__ = [
    "NOISE_FREE",
    "SYNTH_FILE",
    "TRUTH_FILE",
    "noise_floor",
    "pool_noise_floor",
    "split_noise_floors",
]

SYNTH_FILE = "synth.json"  # the pool's description (parameters, effects, noise floor)
TRUTH_FILE = "synth_truth.csv"  # per-row truth, written beside train.csv
NOISE_FREE = "noise_free"  # its column: E[score | what is visible]


def noise_floor(scores: np.ndarray, noise_free: np.ndarray) -> float:
    """RMSE of the noise-free expected scores against the final scores of the same rows."""
    return rmse(scores, noise_free)


def pool_noise_floor(synth_doc: dict[str, Any]) -> float | None:
    """The pool's noise floor as the generator wrote it in ``synth.json`` (None if absent)."""
    value = synth_doc.get("noise_floor")
    return float(value) if isinstance(value, int | float) else None


def split_noise_floors(
    pool_dir: Path | None, splits: dict[str, pd.DataFrame]
) -> dict[str, float] | None:
    """Noise floor of each split's own rows, from the pool's ``synth_truth.csv``.

    None when ``pool_dir`` has no truth file, or the truth is of another pool (a split row is
    missing from it): no floor rather than a wrong one.
    """
    path = pool_dir / TRUTH_FILE if pool_dir is not None else None
    if path is None or not path.is_file():
        return None
    truth = pd.read_csv(path, dtype={ID: str}, usecols=lambda c: c in (ID, NOISE_FREE))
    if NOISE_FREE not in truth.columns:
        return None
    expected_by_id = truth.set_index(ID)[NOISE_FREE]
    floors = {}
    for split, frame in splits.items():
        expected = expected_by_id.reindex(frame[ID])
        if expected.isna().any():
            return None
        floors[split] = noise_floor(frame[TARGET].to_numpy(float), expected.to_numpy(float))
    return floors
