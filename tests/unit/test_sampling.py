"""Sampling: exact sizes, disjoint splits, determinism, bias that really shifts flag shares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pawpaw.data.sampling import SampleError, SampleSpec, draw_sample, flag_shares
from pawpaw.schema import COLUMNS, FLAGS, ID, SPLITS, TARGET

pytestmark = pytest.mark.unit


def _pool(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({ID: [f"{i:032x}" for i in rng.permutation(n)]})
    for flag in FLAGS:
        frame[flag] = (rng.random(n) < 0.2).astype(int)
    # A structural correlation like the real data's: eyes visible implies a face.
    frame["Face"] = frame["Face"] | frame["Eyes"]
    frame[TARGET] = rng.integers(1, 101, n)
    return frame[list(COLUMNS)]


def _spec(**kw) -> SampleSpec:
    args = {"n": 120, "seed": 7, "val_fraction": 0.15, "test_fraction": 0.25}
    args.update(kw)
    return SampleSpec(**args)


def test_sizes_exact_columns_and_disjoint() -> None:
    pool = _pool()
    spec = _spec(n=101)
    out = draw_sample(pool, spec)
    assert list(out) == list(SPLITS)
    assert {s: len(f) for s, f in out.items()} == spec.sizes == {"train": 61, "val": 15, "test": 25}
    ids = [set(f[ID]) for f in out.values()]
    assert sum(map(len, ids)) == 101
    assert len(ids[0] | ids[1] | ids[2]) == 101
    assert set().union(*ids) <= set(pool[ID])
    for frame in out.values():
        assert tuple(frame.columns) == COLUMNS
        assert frame[ID].is_monotonic_increasing
    # Rows come through unchanged.
    merged = pd.concat(out.values()).merge(pool, on=ID, suffixes=("", "_pool"))
    assert (merged[TARGET] == merged[f"{TARGET}_pool"]).all()


def test_deterministic_and_independent_of_pool_order() -> None:
    pool = _pool()
    a = draw_sample(pool, _spec())
    b = draw_sample(pool.sample(frac=1, random_state=3), _spec())
    for split in SPLITS:
        pd.testing.assert_frame_equal(a[split], b[split])
    c = draw_sample(pool, _spec(seed=8))
    assert set(a["test"][ID]) != set(c["test"][ID])


def test_bias_sets_the_flag_share() -> None:
    pool = _pool()
    base = flag_shares(pd.concat(draw_sample(pool, _spec()).values()))
    out = pd.concat(draw_sample(pool, _spec(bias={"Blur": 0.6})).values())
    assert base["Blur"] < 0.35
    assert flag_shares(out)["Blur"] == pytest.approx(0.6, abs=0.5 / 120)
    none = pd.concat(draw_sample(pool, _spec(bias={"Blur": 0.0})).values())
    assert flag_shares(none)["Blur"] == 0.0


def test_bias_on_two_correlated_flags() -> None:
    pool = _pool()
    out = pd.concat(draw_sample(pool, _spec(bias={"Blur": 0.5, "Eyes": 0.4})).values())
    shares = flag_shares(out)
    assert shares["Blur"] == pytest.approx(0.5, abs=2 / 120)
    assert shares["Eyes"] == pytest.approx(0.4, abs=2 / 120)
    # The pool's structure is kept: every sampled Eyes row still has a Face.
    assert (out.loc[out["Eyes"] == 1, "Face"] == 1).all()


def test_spec_is_canonical() -> None:
    a = _spec(bias={"Blur": 0.5, "Eyes": 1})
    b = _spec(bias={"Eyes": 1.0, "Blur": 0.5})
    assert a == b and a.digest() == b.digest()
    assert list(a.bias) == ["Eyes", "Blur"]
    assert SampleSpec.from_dict(a.to_dict()) == a


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"n": 2}, "integer >= 3"),
        ({"seed": -1}, "seed"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "must be < 1"),
        ({"n": 3, "val_fraction": 0.1, "test_fraction": 0.1}, "empty"),
        ({"bias": {"Fur": 0.5}}, "unknown flag(s) ['Fur']"),
        ({"bias": {"Blur": 1.5}}, "'Blur' must be in [0, 1]"),
    ],
)
def test_bad_specs_are_named(kw: dict, message: str) -> None:
    with pytest.raises(SampleError, match=None) as info:
        _spec(**kw)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (_spec(n=601), "exceeds the pool's 600 rows"),
        (_spec(n=500, bias={"Blur": 0.9}), "too few rows with Blur=1"),
        (_spec(bias={"Eyes": 0.6, "Face": 0.3}), "cannot be met together"),
    ],
)
def test_pool_too_small_is_named(spec: SampleSpec, message: str) -> None:
    with pytest.raises(SampleError) as info:
        draw_sample(_pool(), spec)
    assert message in str(info.value)


def test_bad_pool_frames_are_named() -> None:
    pool = _pool()
    with pytest.raises(SampleError, match="lacks column"):
        draw_sample(pool.drop(columns=["Blur"]), _spec())
    dup = pd.concat([pool, pool.iloc[[0]]])
    with pytest.raises(SampleError, match="duplicate Id"):
        draw_sample(dup, _spec())
    no_blur = pool.assign(Blur=0)
    with pytest.raises(SampleError, match="no such row"):
        draw_sample(no_blur, _spec(bias={"Blur": 0.1}))


def test_sample_key_is_canonical_and_distinguishes_what_matters(tmp_path) -> None:
    from pawpaw.data.sampling import sample_key

    a = SampleSpec(n=100, seed=1, val_fraction=0.15, test_fraction=0.25, bias={"Blur": 1})
    b = SampleSpec(n=100, seed=1, val_fraction=0.15, test_fraction=0.25, bias={"Blur": 1.0})
    assert sample_key(tmp_path, a) == sample_key(tmp_path / "x" / "..", b)
    assert sample_key(tmp_path, a, month="2026-10").startswith("2026-10-n100-seed1-")
    other = SampleSpec(n=100, seed=2, val_fraction=0.15, test_fraction=0.25, bias={"Blur": 1})
    assert sample_key(tmp_path, other) != sample_key(tmp_path, a)
    assert sample_key(tmp_path / "other", a) != sample_key(tmp_path, a)
