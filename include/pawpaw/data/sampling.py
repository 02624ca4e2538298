"""Drawing a monthly sample from a pool: seeded, exact split sizes, optional flag bias.

A :class:`SampleSpec` says how many rows to draw, with which seed, how to split them and,
optionally, which share of the sample should carry a flag (``bias={"Blur": 0.4}``: 40% of
the sample is blurred, whatever the pool's share). :func:`draw_sample` is pure: the same pool
content and spec give the same three frames, whatever the pool's row order.

How bias works: the pool is partitioned into cells by the biased flags (one flag: flagged /
unflagged; k flags: up to 2^k cells). Cell targets start from the pool's own cell counts, so
correlations between flags are kept, and are raked (iterative proportional fitting) until each
flag's share equals the requested one; the targets are then rounded to whole rows and drawn
without replacement inside each cell. With one biased flag the share is exact (to one row);
with several it is exact up to the rounding of the cells.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pawpaw.schema import COLUMNS, FLAGS, ID, SPLITS

__all__ = ["SampleError", "SampleSpec", "draw_sample", "flag_shares", "sample_key"]


class SampleError(ValueError):
    """A sample spec that cannot be drawn (bad numbers, unknown flags, too small a pool)."""


def _round_half_up(x: float) -> int:
    # Python's round() rounds half to even; sizes should not depend on that subtlety.
    return math.floor(x + 0.5)


@dataclass(frozen=True)
class SampleSpec:
    """What to draw: ``n`` rows with ``seed``, split train/val/test, optional flag shares."""

    n: int
    seed: int
    val_fraction: float
    test_fraction: float
    bias: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 3:
            raise SampleError(f"sample size n must be an integer >= 3, got {self.n!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SampleError(f"seed must be a non-negative integer, got {self.seed!r}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value < 1:
                raise SampleError(f"{name} must be in (0, 1), got {value!r}")
        if self.val_fraction + self.test_fraction >= 1:
            raise SampleError(
                f"val_fraction + test_fraction must be < 1 (train needs rows), got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        if not isinstance(self.bias, Mapping):
            raise SampleError(f"bias must be a mapping flag -> share, got {self.bias!r}")
        unknown = sorted(set(self.bias) - set(FLAGS))
        if unknown:
            raise SampleError(f"bias names unknown flag(s) {unknown}; flags are {list(FLAGS)}")
        for flag, share in self.bias.items():
            if not isinstance(share, int | float) or not 0 <= share <= 1:
                raise SampleError(f"bias share for {flag!r} must be in [0, 1], got {share!r}")
        # Canonical form (flag order of the schema, floats) so equal specs compare and hash
        # (digest) equal however the caller spelled them.
        canonical = {f: float(self.bias[f]) for f in FLAGS if f in self.bias}
        object.__setattr__(self, "bias", canonical)
        object.__setattr__(self, "val_fraction", float(self.val_fraction))
        object.__setattr__(self, "test_fraction", float(self.test_fraction))
        sizes = self.sizes
        empty = [s for s, k in sizes.items() if k < 1]
        if empty:
            raise SampleError(f"n={self.n} leaves split(s) {empty} empty with these fractions")

    @property
    def sizes(self) -> dict[str, int]:
        """Exact rows per split: val and test are rounded fractions of n, train the rest."""
        n_val = _round_half_up(self.n * self.val_fraction)
        n_test = _round_half_up(self.n * self.test_fraction)
        return {"train": self.n - n_val - n_test, "val": n_val, "test": n_test}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SampleSpec:
        return cls(
            n=int(data["n"]),
            seed=int(data["seed"]),
            val_fraction=float(data["val_fraction"]),
            test_fraction=float(data["test_fraction"]),
            bias=dict(data.get("bias") or {}),
        )

    def digest(self) -> str:
        """A stable hex digest of the spec (used in default sample keys)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def sample_key(pool: Path, spec: SampleSpec, *, month: str | None = None) -> str:
    """A sample's identity: the same pool (resolved path), spec and month give the same key, so
    a rerun finds the same lakeFS commit. The CLI and the DAG both use this one function."""
    pool = pool.expanduser().resolve()
    digest = hashlib.sha256(f"{pool}\0{spec.digest()}".encode()).hexdigest()[:10]
    return f"{month or pool.name}-n{spec.n}-seed{spec.seed}-{digest}"


def flag_shares(frame: pd.DataFrame) -> dict[str, float]:
    """Share of rows with each flag set (0.0 for an empty frame)."""
    if len(frame) == 0:
        return dict.fromkeys(FLAGS, 0.0)
    return {f: float(frame[f].astype(int).mean()) for f in FLAGS}


def _check_frame(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise SampleError(f"pool frame lacks column(s) {missing}")
    dup = frame[ID][frame[ID].duplicated()]
    if len(dup):
        raise SampleError(f"pool has duplicate Id(s), e.g. {dup.iloc[0]!r} ({len(dup)} in all)")
    # Sorting by Id makes the draw depend on the pool's content only, not on its row order.
    return frame.loc[:, list(COLUMNS)].sort_values(ID, kind="stable").reset_index(drop=True)


def _rake(counts: np.ndarray, keys: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
    """Scale cell weights (shape [cells]) until each flag's weighted share hits its target.

    ``keys`` is [cells, flags] of 0/1; ``targets`` is [flags]. Cells with no pool rows keep
    weight 0, so the result never asks for rows that do not exist in a combination.
    Returns None when the targets cannot be met together (e.g. a flag that only ever occurs
    with another one, asked at a higher share than that one).
    """
    weights = counts.astype(float)
    for _ in range(500):
        for j, target in enumerate(targets):
            on = keys[:, j] == 1
            total = weights.sum()
            have_on, have_off = weights[on].sum(), weights[~on].sum()
            if have_on > 0:
                weights[on] *= target * total / have_on
            if have_off > 0:
                weights[~on] *= (1 - target) * total / have_off
            if weights.sum() <= 0:
                return None
        shares = (weights[:, None] * keys).sum(0) / weights.sum()
        if np.abs(shares - targets).max() < 1e-9:
            return weights / weights.sum()
    return None


def _largest_remainder(shares: np.ndarray, n: int) -> np.ndarray:
    raw = shares * n
    out = np.floor(raw).astype(int)
    short = n - out.sum()
    # Ties broken by cell index so the rounding is deterministic.
    order = np.lexsort((np.arange(len(raw)), -(raw - out)))
    out[order[:short]] += 1
    return out


def _biased_rows(pool: pd.DataFrame, spec: SampleSpec, rng: np.random.Generator) -> np.ndarray:
    flags = list(spec.bias)
    targets = np.array([spec.bias[f] for f in flags])
    bits = pool[flags].astype(int).to_numpy()
    for j, flag in enumerate(flags):
        available = int(bits[:, j].sum())
        if targets[j] > 0 and available == 0:
            raise SampleError(f"bias asks {targets[j]:.0%} {flag!r} but the pool has no such row")
        if targets[j] < 1 and available == len(pool):
            raise SampleError(f"bias asks {targets[j]:.0%} {flag!r} but every pool row has it")
    keys, cell_of_row, counts = np.unique(bits, axis=0, return_inverse=True, return_counts=True)
    cell_of_row = cell_of_row.reshape(-1)
    shares = _rake(counts, keys, targets)
    if shares is None:
        raise SampleError(
            f"bias {spec.bias} cannot be met together: the pool's flag combinations do not allow"
            " these shares at once"
        )
    wanted = _largest_remainder(shares, spec.n)
    chosen: list[np.ndarray] = []
    for cell, (want, have) in enumerate(zip(wanted, counts, strict=True)):
        if want > have:
            desc = ", ".join(f"{f}={int(b)}" for f, b in zip(flags, keys[cell], strict=True))
            raise SampleError(
                f"pool has too few rows with {desc}: bias {spec.bias} needs {want} of n={spec.n},"
                f" the pool has {have}"
            )
        members = np.flatnonzero(cell_of_row == cell)
        chosen.append(rng.choice(members, size=want, replace=False))
    return np.concatenate(chosen)


def draw_sample(frame: pd.DataFrame, spec: SampleSpec) -> dict[str, pd.DataFrame]:
    """Draw ``spec.n`` distinct pool rows and split them; returns ``{"train","val","test"}``.

    Each frame has :data:`pawpaw.schema.COLUMNS`, is sorted by Id, and has exactly
    ``spec.sizes[split]`` rows; the three are disjoint. Raises :class:`SampleError` naming the
    problem when the pool is too small or cannot meet the bias.
    """
    pool = _check_frame(frame)
    if spec.n > len(pool):
        raise SampleError(f"sample size n={spec.n} exceeds the pool's {len(pool)} rows")
    rng = np.random.default_rng(spec.seed)
    if spec.bias:
        rows = _biased_rows(pool, spec, rng)
    else:
        rows = rng.choice(len(pool), size=spec.n, replace=False)
    # Shuffle before splitting: the biased draw is ordered by cell.
    rows = rng.permutation(rows)
    sizes = spec.sizes
    bounds = np.cumsum([0, *(sizes[s] for s in SPLITS)])
    return {
        split: pool.iloc[rows[bounds[i] : bounds[i + 1]]]
        .sort_values(ID, kind="stable")
        .reset_index(drop=True)
        for i, split in enumerate(SPLITS)
    }
