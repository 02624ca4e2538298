"""Regression heads: numpy prediction equals the fitted estimator, selection, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pawpaw.metrics import rmse
from pawpaw.model.heads import HEAD_KINDS, FittedHead, HeadError, fit_best_head, fit_head

pytestmark = pytest.mark.unit


def _data(n: int = 240, d: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embedding-like features (non-negative, like pooled ReLU activations) and a score that
    depends on them non-linearly, plus noise of sd 5."""
    rng = np.random.default_rng(seed)
    x = np.abs(rng.normal(size=(n, d))) * rng.uniform(0.5, 2.0, size=d)
    w = rng.normal(size=d) / np.sqrt(d)
    signal = np.tanh(x @ w - np.median(x @ w))
    y = np.clip(38 + 25 * signal + rng.normal(0, 5, n), 1, 100)
    return x, y


def test_every_kind_predicts_scores_in_range_and_beats_the_mean() -> None:
    x, y = _data()
    xt, yt, xv, yv = x[:180], y[:180], x[180:], y[180:]
    mean_rmse = rmse(yv, np.full_like(yv, yt.mean()))
    for kind in HEAD_KINDS:
        head = fit_head(kind, xt, yt)
        pred = head.predict(xv)
        assert pred.shape == (len(xv),) and pred.dtype == np.float64
        assert pred.min() >= 1 and pred.max() <= 100
        assert rmse(yv, pred) < 0.8 * mean_rmse, kind


def test_ridge_equals_sklearn_ridge_with_the_chosen_alpha() -> None:
    from sklearn.linear_model import Ridge

    x, y = _data(n=120, d=200)  # n < d: the dual (Gram) path
    head = fit_head("ridge", x, y)
    z = (x - head.arrays["x_mean"]) / head.arrays["x_scale"]
    ref = Ridge(alpha=head.params["alpha"]).fit(z, y)
    np.testing.assert_allclose(head.raw(x), ref.predict(z), rtol=1e-6, atol=1e-6)

    x2, y2 = _data(n=300, d=20)  # n > d: the primal path
    head2 = fit_head("ridge", x2, y2)
    z2 = (x2 - head2.arrays["x_mean"]) / head2.arrays["x_scale"]
    ref2 = Ridge(alpha=head2.params["alpha"]).fit(z2, y2)
    np.testing.assert_allclose(head2.raw(x2), ref2.predict(z2), rtol=1e-6, atol=1e-6)


def test_ridge_alpha_is_chosen_by_leave_one_out() -> None:
    from sklearn.linear_model import RidgeCV

    from pawpaw.model.heads import _RIDGE_ALPHAS

    x, y = _data(n=150, d=60)
    head = fit_head("ridge", x, y)
    z = (x - head.arrays["x_mean"]) / head.arrays["x_scale"]
    assert head.params["alpha"] == RidgeCV(alphas=_RIDGE_ALPHAS).fit(z, y).alpha_


def test_svr_numpy_kernel_equals_sklearn() -> None:
    from sklearn.svm import SVR

    x, y = _data()
    head = fit_head("svr", x, y)
    a = head.arrays
    z = (x - a["x_mean"]) / a["x_scale"]
    ref = SVR(
        kernel="rbf", C=head.params["C"], epsilon=head.params["epsilon"], gamma=a["gamma"][0]
    ).fit(z, (y - a["y_mean"][0]) / a["y_scale"][0])
    expected = ref.predict(z) * a["y_scale"][0] + a["y_mean"][0]
    np.testing.assert_allclose(head.raw(x), expected, rtol=1e-7, atol=1e-7)


def test_fit_best_head_keeps_the_lowest_val_rmse_and_reports_all() -> None:
    x, y = _data()
    lines: list[str] = []
    head = fit_best_head(x[:180], y[:180], x[180:], y[180:], log=lines.append)
    assert len(head.candidates) == len(lines) >= len(HEAD_KINDS)
    assert head.val_rmse == min(head.candidates.values())
    assert head.val_rmse == pytest.approx(rmse(y[180:], head.predict(x[180:])))
    assert {name.split("(")[0] for name in head.candidates} == {*HEAD_KINDS, "blend"}
    assert head.name in head.candidates

    only = fit_best_head(x[:180], y[:180], x[180:], y[180:], kinds=["ridge"])
    assert list(only.candidates) == [only.name] and only.kind == "linear"


def test_blend_averages_its_members_and_round_trips(tmp_path: Path) -> None:
    x, y = _data()
    members = [fit_head(kind, x[:180], y[:180]) for kind in ("ridge", "svr")]
    blend = FittedHead.blend(members)
    assert blend.name == f"blend({members[0].name} + {members[1].name})"
    expected = (members[0].predict(x) + members[1].predict(x)) / 2
    np.testing.assert_allclose(blend.predict(x), expected)
    back = FittedHead.from_npz(blend.to_npz(tmp_path / "blend.npz"))
    assert back.name == blend.name
    np.testing.assert_array_equal(back.predict(x), blend.predict(x))
    with pytest.raises(HeadError, match="at least two"):
        FittedHead.blend(members[:1])


def test_npz_round_trip_preserves_predictions(tmp_path: Path) -> None:
    x, y = _data()
    for kind in HEAD_KINDS:
        head = fit_best_head(x[:180], y[:180], x[180:], y[180:], kinds=[kind])
        path = head.to_npz(tmp_path / f"{kind}.npz")
        back = FittedHead.from_npz(path)
        assert (back.kind, back.transform, back.name) == (head.kind, head.transform, head.name)
        assert back.val_rmse == head.val_rmse and back.candidates == head.candidates
        np.testing.assert_array_equal(back.predict(x), head.predict(x))


def test_linear_head_with_sigmoid_transform() -> None:
    rng = np.random.default_rng(1)
    f = rng.normal(size=(10, 4))
    w, b = rng.normal(size=4), -0.3
    head = FittedHead.linear(w, b, transform="sigmoid*100")
    expected = np.clip(100 / (1 + np.exp(-(f @ w + b))), 1, 100)
    np.testing.assert_allclose(head.predict(f), expected)


def test_bad_input_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    x, y = _data(n=40, d=8)
    with pytest.raises(HeadError, match="40 feature rows but 39 targets"):
        fit_head("ridge", x, y[:-1])
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(HeadError, match="NaN"):
        fit_head("ridge", bad, y)
    with pytest.raises(HeadError, match="unknown head kind"):
        fit_best_head(x, y, x, y, kinds=["forest"])
    with pytest.raises(HeadError, match="train has 8 features but val has 7"):
        fit_best_head(x, y, x[:, :7], y)
    head = fit_head("ridge", x, y)
    with pytest.raises(HeadError, match=r"shape \[N, 8\]"):
        head.predict(x[:, :5])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(HeadError, match=r"garbage\.npz"):
        FittedHead.from_npz(garbage)
    with pytest.raises(HeadError, match="missing arrays"):
        FittedHead("svr", {"x_mean": np.zeros(2), "x_scale": np.ones(2)})
