"""The score model of the synthetic pool: each row's flags, latent appeal, noise and score.

Every row gets its twelve flags, a latent *appeal* and a Gaussian noise draw (vectorised, from
``seed``; :func:`sample_rows`). The score model (:class:`ScoreModel`) is::

    u      ~ N(appeal_shift, 1)                         latent appeal, in "appeal std units"
    a      = min(1, appeal_k * Phi(u) ** appeal_power)   visible appeal level in [0, 1]
    signal = base + appeal_effect * a + sum_f effect_f * flag_f
    score  = clip(floor(signal + eps + 0.5), 1, 100),   eps ~ N(0, noise_sigma^2)

``a`` is what the picture shows (:mod:`pawpaw.synth.render`). Most pets have ``a`` near 0 and a
few are stars with ``a`` near 1; that tail is what skews the scores to the right (mean above
median) and piles 2.9% of them up at the cap of 100, as in the Kaggle data. The flags are
visible too but, as in the real data, move the score by only a point or two: a linear model on
the flags barely beats the mean.

The *noise-free score* of a row is the expectation of its score given its signal,
``E[score | signal] = 1 + sum_{j=2..100} Phi((signal - j + 0.5) / noise_sigma)``
(:func:`expected_score`): the best any predictor of the picture can do under squared error.
Its RMSE against the final scores is the noise floor (:mod:`pawpaw.synth.truth`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pawpaw.schema import FLAGS, ID, TARGET
from pawpaw.synth.truth import NOISE_FREE

__all__ = [
    "FLAG_SHARES",
    "SCORE_MODEL",
    "TRUTH_COLUMNS",
    "ScoreModel",
    "Shift",
    "expected_score",
    "expected_variance",
    "sample_rows",
]

# Share of rows with each flag in the Kaggle train.csv (DATA_FACTS.md).
FLAG_SHARES: dict[str, float] = {
    "Subject Focus": 0.028,
    "Eyes": 0.773,
    "Face": 0.904,
    "Near": 0.862,
    "Action": 0.010,
    "Accessory": 0.068,
    "Group": 0.129,
    "Collage": 0.050,
    "Human": 0.166,
    "Occlusion": 0.172,
    "Info": 0.061,
    "Blur": 0.070,
}

# Per-row columns of synth_truth.csv (besides Id): everything the score was made of.
TRUTH_COLUMNS: tuple[str, ...] = (
    "width",
    "height",
    "appeal_latent",
    "appeal",
    "signal",
    "noise",
    NOISE_FREE,
)


@dataclass(frozen=True)
class ScoreModel:
    """How the visible attributes make the score (the formula: the module docstring).

    The defaults were fitted (200k simulated rows, the flag shares above) to the Kaggle score
    distribution: mean 38, std 20.6, 2.9% at 100, 95th percentile 83; see ``synth.json`` of any
    pool for what a given sample realised. With Gaussian noise of sigma 16 the quartiles come
    out near 24 / 35 / 48 instead of 25 / 33 / 46: noise alone already has an interquartile
    range of 21.6, so no additive-noise model can be as tight as the real data there.
    """

    base: float = 30.16
    noise_sigma: float = 16.0
    appeal_effect: float = 78.46  # score points from a = 0 to a = 1
    appeal_k: float = 1.69
    appeal_power: float = 21.0
    flag_effects: Mapping[str, float] = field(
        default_factory=lambda: {
            "Subject Focus": 2.0,
            "Eyes": 1.0,
            "Face": 1.0,
            "Near": 1.0,
            "Action": 3.0,
            "Accessory": 1.0,
            "Group": 2.0,
            "Collage": -1.0,
            "Human": 1.0,
            "Occlusion": -1.0,
            "Info": -1.0,
            "Blur": -3.0,
        }
    )

    def appeal_level(self, latent: np.ndarray) -> np.ndarray:
        """Visible appeal ``a`` in [0, 1] from the latent ``u``."""
        from scipy.special import ndtr

        return np.minimum(1.0, self.appeal_k * ndtr(latent) ** self.appeal_power)

    def to_dict(self) -> dict[str, Any]:
        return {
            "formula": (
                "u ~ N(appeal_shift, 1); a = min(1, appeal_k * Phi(u) ** appeal_power); "
                "signal = base + appeal_effect * a + sum(flag_effects[f] * flag_f); "
                "score = clip(floor(signal + eps + 0.5), 1, 100), eps ~ N(0, noise_sigma^2)"
            ),
            "noise_free": (
                "E[score | signal] = 1 + sum_{j=2..100} Phi((signal - j + 0.5) / noise_sigma)"
            ),
            **{k: v for k, v in asdict(self).items() if k != "flag_effects"},
            "flag_effects": dict(self.flag_effects),
        }


SCORE_MODEL = ScoreModel()


@dataclass(frozen=True)
class Shift:
    """A shifted population: flag shares overridden, appeal moved by ``appeal_shift`` std units.

    ``Shift(flag_shares={"Blur": 0.5}, appeal_shift=-1.0)`` blurs half of the pictures and
    lowers every pet's latent appeal by one standard deviation (fewer stars, lower scores).
    """

    flag_shares: Mapping[str, float] = field(default_factory=dict)
    appeal_shift: float = 0.0

    def __post_init__(self) -> None:
        for name, share in self.flag_shares.items():
            if name not in FLAGS:
                raise ValueError(f"shift: unknown flag {name!r}; flags are {', '.join(FLAGS)}")
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"shift: share of {name!r} must be in 0..1, got {share}")
        if not math.isfinite(self.appeal_shift) or abs(self.appeal_shift) > 5:
            raise ValueError(f"shift: appeal must be within -5..5 std, got {self.appeal_shift}")
        shares = self.shares()
        if shares["Eyes"] > shares["Face"]:
            # Eyes are drawn on faces: a pet with visible eyes shows its face.
            raise ValueError(
                f"shift: Eyes share {shares['Eyes']} exceeds Face share {shares['Face']}"
            )

    @classmethod
    def parse(cls, items: Iterable[str]) -> Shift:
        """``["Blur=0.5", "Subject Focus=0.1", "appeal=-1"]`` -> Shift (names case-insensitive,
        ``_``/``-`` may stand for spaces)."""
        by_key = {_key(f): f for f in FLAGS}
        shares: dict[str, float] = {}
        appeal = 0.0
        for item in items:
            name, sep, value = item.rpartition("=")
            try:
                if not sep or not name.strip():
                    raise ValueError
                number = float(value)
            except ValueError:
                raise ValueError(
                    f"shift {item!r}: expected NAME=VALUE, e.g. Blur=0.5 or appeal=-1"
                ) from None
            key = _key(name)
            if key == "appeal":
                appeal = number
            elif key in by_key:
                shares[by_key[key]] = number
            else:
                raise ValueError(
                    f"shift {item!r}: unknown name {name.strip()!r}; "
                    f"use appeal or one of {', '.join(FLAGS)}"
                )
        return cls(flag_shares=shares, appeal_shift=appeal)

    def shares(self) -> dict[str, float]:
        """The flag shares of the shifted population."""
        return {**FLAG_SHARES, **self.flag_shares}

    def to_dict(self) -> dict[str, Any]:
        return {
            "flag_shares": {f: self.flag_shares[f] for f in FLAGS if f in self.flag_shares},
            "appeal_shift": self.appeal_shift,
        }


def _key(name: str) -> str:
    return name.strip().lower().replace("_", " ").replace("-", " ")


# --- rows: flags, appeal, noise, score ------------------------------------------------------


def expected_score(signal: np.ndarray, sigma: float) -> np.ndarray:
    """``E[clip(floor(signal + eps + 0.5), 1, 100)]`` for ``eps ~ N(0, sigma^2)``.

    The score is 1 plus the number of thresholds ``j - 0.5`` (j = 2..100) that
    ``signal + eps`` reaches, so its expectation is a sum of normal tail probabilities.
    """
    from scipy.special import ndtr

    signal = np.asarray(signal, dtype=np.float64)
    thresholds = np.arange(2, 101) - 0.5
    out = np.ones(signal.shape, dtype=np.float64)
    for t in thresholds:  # 99 vector passes: no (rows x 99) temporary
        out += ndtr((signal - t) / sigma)
    return out


def expected_variance(signal: np.ndarray, sigma: float) -> np.ndarray:
    """``Var[score | signal]``: from the distribution over the 100 possible scores."""
    from scipy.special import ndtr

    edges = np.concatenate(([-np.inf], np.arange(2, 101) - 0.5, [np.inf]))  # 101 edges
    cdf = ndtr((edges[None, :] - np.asarray(signal, dtype=np.float64)[:, None]) / sigma)
    p = np.diff(cdf, axis=1)  # (rows, 100): P(score = k), k = 1..100
    k = np.arange(1, 101, dtype=np.float64)
    mean = p @ k
    return np.maximum(p @ (k * k) - mean * mean, 0.0)


def _row_id(seed: int, index: int) -> str:
    # 32 hex chars like the Kaggle Ids; differs across seeds, so pools can be mixed.
    return hashlib.blake2b(f"pawpaw-synth/{seed}/{index}".encode(), digest_size=16).hexdigest()


def sample_rows(
    n: int,
    seed: int = 0,
    shift: Shift | None = None,
    *,
    size_range: tuple[int, int] = (224, 512),
    model: ScoreModel = SCORE_MODEL,
) -> pd.DataFrame:
    """The table of a pool without its pictures: ``COLUMNS`` then ``TRUTH_COLUMNS``.

    Flags, appeal, noise and image sizes come from independent streams of ``seed``, and each
    flag is a threshold on its own uniform draw: so a shift changes only what it names (with
    Blur 0.07 -> 0.5, every row blurred before stays blurred, and nothing else moves). Eyes
    are drawn only on faces, so a Face share also moves Eyes (and may not fall below it).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    lo, hi = size_range
    if not 32 <= lo <= hi <= 4096:
        raise ValueError(f"size_range must satisfy 32 <= min <= max <= 4096, got {size_range}")
    shift = shift or Shift()
    shares = shift.shares()
    flags_rng, appeal_rng, noise_rng, size_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )

    draws = flags_rng.random((n, len(FLAGS)))
    flags = {f: (draws[:, j] < shares[f]).astype(np.int64) for j, f in enumerate(FLAGS)}
    # Eyes only where a face shows: P(Eyes | Face) keeps the Eyes share as asked.
    eyes_given_face = shares["Eyes"] / shares["Face"] if shares["Face"] > 0 else 0.0
    flags["Eyes"] = flags["Face"] * (draws[:, FLAGS.index("Eyes")] < eyes_given_face)

    latent = appeal_rng.standard_normal(n) + shift.appeal_shift
    appeal = model.appeal_level(latent)
    signal = model.base + model.appeal_effect * appeal
    for f in FLAGS:
        signal = signal + model.flag_effects.get(f, 0.0) * flags[f]
    noise = noise_rng.normal(0.0, model.noise_sigma, n)
    score = np.clip(np.floor(signal + noise + 0.5), 1, 100).astype(np.int64)
    sizes = size_rng.integers(lo, hi + 1, size=(n, 2))  # each side independently: both shapes

    frame = pd.DataFrame({ID: [_row_id(seed, i) for i in range(n)]})
    for f in FLAGS:
        frame[f] = flags[f].astype(np.int64)
    frame[TARGET] = score
    frame["width"] = sizes[:, 0]
    frame["height"] = sizes[:, 1]
    frame["appeal_latent"] = latent
    frame["appeal"] = appeal
    frame["signal"] = signal
    frame["noise"] = noise
    frame[NOISE_FREE] = expected_score(signal, model.noise_sigma)
    return frame
