"""Regression heads on frozen image embeddings: ridge, RBF-SVR and a small MLP.

Fitting uses scikit-learn (training time only, imported inside the fit functions); a fitted
head is pure numpy data (:class:`FittedHead`) that predicts with numpy alone, so the served
model needs neither sklearn nor torch. Every head standardises the embedding first and
predicts Pawpularity clipped to 1..100.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pawpaw.metrics import rmse

__all__ = [
    "HEAD_KINDS",
    "SIGMOID_X100",
    "TRANSFORMS",
    "FittedHead",
    "HeadError",
    "fit_best_head",
    "fit_head",
]

SCORE_MIN, SCORE_MAX = 1.0, 100.0
# "sigmoid*100": the fine-tune path trains with BCE on target/100, so its linear output is a
# logit; "identity": heads fitted here regress the score directly.
SIGMOID_X100 = "sigmoid*100"
TRANSFORMS: tuple[str, ...] = ("identity", SIGMOID_X100)
HEAD_KINDS: tuple[str, ...] = ("ridge", "svr", "mlp")
_KINDS = ("linear", "svr", "mlp", "blend")  # FittedHead kinds (ridge is a linear head)

# Hyperparameter grids, kept small so a retrain of ~1,200 x 1,280 stays within seconds on two
# cores. Ridge picks alpha by exact leave-one-out error; SVR and MLP settings are candidates of
# their own, judged on the validation split like the head kinds. Chosen on lite0 embeddings of
# the synthetic pool (benchmarks/retrain_head.py): a wider RBF (gamma 0.5/D on standardised
# features) beat sklearn's "scale" (1/D), and only a strongly regularised, narrow MLP
# generalises from ~1,200 rows of 1,280 features.
_RIDGE_ALPHAS = np.logspace(-1, 5, 13)
_SVR_GRID: tuple[dict[str, float], ...] = (
    {"C": 1.0, "epsilon": 0.1, "gamma_scale": 0.5},
    {"C": 2.0, "epsilon": 0.1, "gamma_scale": 0.5},
)
_MLP_GRID: tuple[dict[str, Any], ...] = ({"hidden": 32, "weight_decay": 1.0},)
_PREDICT_CHUNK = 2048  # rows per kernel block in SVR prediction: bounds memory at N x n_sv


class HeadError(ValueError):
    """Bad input to a head (shape mismatch, empty set, unknown kind, corrupt file)."""


@dataclass(frozen=True)
class FittedHead:
    """A fitted head as plain arrays.

    ``kind`` is ``linear`` (ridge, or the fine-tuned network's own head), ``svr`` or ``mlp``.
    Arrays (all float64): ``x_mean``/``x_scale`` [D] standardise the embedding;
    linear: ``coef`` [D], ``intercept`` [1];
    svr: ``support`` [S, D] (standardised), ``dual_coef`` [S], ``intercept`` [1], ``gamma`` [1],
    ``y_mean``/``y_scale`` [1];
    mlp: ``w0``, ``b0``, ``w1``, ``b1``, ... (ReLU between layers), ``y_mean``/``y_scale`` [1];
    blend: the mean of member heads' scores; member ``i``'s arrays are stored as ``m{i}.<name>``
    and its kind/transform/params in ``params["members"]``.
    """

    kind: str
    arrays: dict[str, np.ndarray]
    transform: str = "identity"
    params: dict[str, Any] = field(default_factory=dict)  # hyperparameters, for the record
    val_rmse: float | None = None
    # Every candidate tried by fit_best_head: name -> validation RMSE.
    candidates: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise HeadError(f"unknown head kind {self.kind!r}")
        if self.transform not in TRANSFORMS:
            raise HeadError(f"unknown target transform {self.transform!r}; expected {TRANSFORMS}")
        missing = [k for k in _required_arrays(self.kind, self.arrays) if k not in self.arrays]
        if missing:
            raise HeadError(f"{self.kind} head is missing arrays {missing}")

    @property
    def dim(self) -> int:
        return int(self.arrays["x_mean"].shape[0])

    @property
    def name(self) -> str:
        """A short label: the kind plus its hyperparameters, e.g. ``svr(C=4,epsilon=0.1)``."""
        if self.kind == "blend":
            return "blend(" + " + ".join(m.name for m in self.members) + ")"
        inner = ",".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in sorted(self.params.items())
            if k not in ("family", "members")
        )
        return f"{self.params.get('family', self.kind)}({inner})" if inner else self.kind

    @classmethod
    def linear(
        cls,
        coef: np.ndarray,
        intercept: float,
        *,
        transform: str = "identity",
        x_mean: np.ndarray | None = None,
        x_scale: np.ndarray | None = None,
        params: dict[str, Any] | None = None,
    ) -> FittedHead:
        """A linear head ``transform(((x - mean) / scale) @ coef + intercept)``."""
        coef = np.asarray(coef, dtype=np.float64).reshape(-1)
        d = coef.shape[0]
        arrays = {
            "x_mean": np.zeros(d) if x_mean is None else np.asarray(x_mean, np.float64),
            "x_scale": np.ones(d) if x_scale is None else np.asarray(x_scale, np.float64),
            "coef": coef,
            "intercept": np.array([float(intercept)]),
        }
        return cls("linear", arrays, transform=transform, params=dict(params or {}))

    @classmethod
    def blend(cls, members: Sequence[FittedHead], **kwargs: Any) -> FittedHead:
        """A head that averages the scores of ``members`` (all on the same features)."""
        if len(members) < 2:
            raise HeadError("a blend needs at least two member heads")
        if len({m.dim for m in members}) != 1:
            raise HeadError("blend members disagree on the feature dimension")
        arrays = {"x_mean": members[0].arrays["x_mean"], "x_scale": members[0].arrays["x_scale"]}
        described = []
        for i, m in enumerate(members):
            arrays.update({f"m{i}.{k}": v for k, v in m.arrays.items()})
            described.append({"kind": m.kind, "transform": m.transform, "params": m.params})
        return cls("blend", arrays, params={"family": "blend", "members": described}, **kwargs)

    @property
    def members(self) -> list[FittedHead]:
        """The member heads of a blend (empty for other kinds)."""
        if self.kind != "blend":
            return []
        out = []
        for i, spec in enumerate(self.params["members"]):
            prefix = f"m{i}."
            arrays = {k[len(prefix) :]: v for k, v in self.arrays.items() if k.startswith(prefix)}
            out.append(
                FittedHead(spec["kind"], arrays, transform=spec["transform"], params=spec["params"])
            )
        return out

    # --- prediction (numpy only: this runs in the served model) ---------------------------
    def raw(self, features: np.ndarray) -> np.ndarray:
        """The head's output before transform and clipping, shape [N]."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise HeadError(
                f"{self.kind} head expects features of shape [N, {self.dim}], got {x.shape}"
            )
        if self.kind == "blend":
            return np.mean([m.predict(x) for m in self.members], axis=0)
        a = self.arrays
        z = (x - a["x_mean"]) / a["x_scale"]
        if self.kind == "linear":
            return z @ a["coef"] + a["intercept"][0]
        if self.kind == "svr":
            out = np.empty(len(z))
            sv, sv_sq = a["support"], np.einsum("ij,ij->i", a["support"], a["support"])
            for start in range(0, len(z), _PREDICT_CHUNK):
                block = z[start : start + _PREDICT_CHUNK]
                # ||x - s||^2 = |x|^2 + |s|^2 - 2 x.s, clamped: rounding can make it negative.
                d2 = np.einsum("ij,ij->i", block, block)[:, None] + sv_sq[None, :]
                d2 = np.maximum(d2 - 2.0 * block @ sv.T, 0.0)
                out[start : start + len(block)] = (
                    np.exp(-a["gamma"][0] * d2) @ a["dual_coef"] + a["intercept"][0]
                )
            return out * a["y_scale"][0] + a["y_mean"][0]
        h = z
        n_layers = _mlp_layers(a)
        for i in range(n_layers):
            h = h @ a[f"w{i}"] + a[f"b{i}"]
            if i < n_layers - 1:
                h = np.maximum(h, 0.0)
        return h.reshape(-1) * a["y_scale"][0] + a["y_mean"][0]

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Pawpularity for each row of ``features`` [N, D]: float64 [N] in 1..100."""
        r = self.raw(features)
        if self.transform == SIGMOID_X100:
            r = 100.0 / (1.0 + np.exp(-r))
        return np.clip(r, SCORE_MIN, SCORE_MAX)

    # --- persistence ----------------------------------------------------------------------
    def to_npz(self, path: str | Path) -> Path:
        path = Path(path)
        meta = {
            "kind": self.kind,
            "transform": self.transform,
            "params": self.params,
            "val_rmse": self.val_rmse,
            "candidates": self.candidates,
        }
        with path.open("wb") as fh:  # a file handle: np.savez would append ".npz" to a str
            np.savez(fh, __meta__=np.array(json.dumps(meta)), **self.arrays)
        return path

    @classmethod
    def from_npz(cls, path: str | Path) -> FittedHead:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["__meta__"]))
                arrays = {k: np.asarray(data[k]) for k in data.files if k != "__meta__"}
        except (OSError, ValueError, KeyError) as exc:
            raise HeadError(f"{path}: not a head file ({exc})") from exc
        return cls(
            meta["kind"],
            arrays,
            transform=meta["transform"],
            params=meta.get("params", {}),
            val_rmse=meta.get("val_rmse"),
            candidates=meta.get("candidates", {}),
        )


def _required_arrays(kind: str, arrays: dict[str, np.ndarray]) -> tuple[str, ...]:
    base = ("x_mean", "x_scale")
    if kind == "blend":
        return base
    if kind == "linear":
        return (*base, "coef", "intercept")
    if kind == "svr":
        return (*base, "support", "dual_coef", "intercept", "gamma", "y_mean", "y_scale")
    return (*base, "w0", "b0", "y_mean", "y_scale")


def _mlp_layers(arrays: dict[str, np.ndarray]) -> int:
    n = 0
    while f"w{n}" in arrays:
        n += 1
    return n


# --- fitting (training time: sklearn imported here only) ----------------------------------
def _check_xy(x: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or len(x) == 0:
        raise HeadError(f"{what}: expected a non-empty [N, D] feature matrix, got {x.shape}")
    if len(y) != len(x):
        raise HeadError(f"{what}: {len(x)} feature rows but {len(y)} targets")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise HeadError(f"{what}: features or targets contain NaN/inf")
    return x, y


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    # Constant features (dead channels) would divide by zero; leave them centred at 0.
    scale[scale < 1e-8] = 1.0
    return mean, scale


def _fit_ridge(z: np.ndarray, y: np.ndarray, base: dict[str, np.ndarray]) -> FittedHead:
    """Ridge with alpha chosen by exact leave-one-out error, from one eigendecomposition.

    With the spectrum of Z Z^T (or Z^T Z, whichever is smaller) every alpha's fitted values
    and leverages cost O(n k), so the whole grid is about one fit.
    """
    n, d = z.shape
    y_mean = float(y.mean())
    yc = y - y_mean
    if n <= d:
        lam, u = np.linalg.eigh(z @ z.T)  # u: [n, n]
    else:
        lam, v = np.linalg.eigh(z.T @ z)  # v: [d, d]
        keep = lam > 1e-9 * lam.max()
        lam, v = lam[keep], v[:, keep]
        u = (z @ v) / np.sqrt(lam)
    lam = np.maximum(lam, 0.0)
    uty = u.T @ yc
    u2 = u**2
    best_alpha, best_err = float(_RIDGE_ALPHAS[0]), np.inf
    for alpha in _RIDGE_ALPHAS:
        shrink = lam / (lam + alpha)
        fitted = u @ (shrink * uty)
        # + 1/n: the intercept's own leverage.
        leverage = u2 @ shrink + 1.0 / n
        loo = (yc - fitted) / np.maximum(1.0 - leverage, 1e-12)
        err = float(np.mean(loo**2))
        if err < best_err:
            best_alpha, best_err = float(alpha), err
    if n <= d:
        coef = z.T @ (u @ (uty / (lam + best_alpha)))
    else:
        coef = v @ ((v.T @ (z.T @ yc)) / (lam + best_alpha))
    return FittedHead(
        "linear",
        {**base, "coef": coef, "intercept": np.array([y_mean])},
        params={"family": "ridge", "alpha": best_alpha},
    )


def _fit_svr(
    z: np.ndarray,
    y: np.ndarray,
    base: dict[str, np.ndarray],
    c: float,
    epsilon: float,
    gamma_scale: float = 1.0,
) -> FittedHead:
    from sklearn.svm import SVR

    y_mean, y_scale = float(y.mean()), float(y.std() or 1.0)
    # sklearn's gamma "scale" is 1 / (D * var(z)); gamma_scale widens or narrows it.
    gamma = gamma_scale / (z.shape[1] * float(z.var() or 1.0))
    model = SVR(kernel="rbf", C=c, epsilon=epsilon, gamma=gamma, cache_size=500)
    model.fit(z, (y - y_mean) / y_scale)
    arrays = {
        **base,
        "support": model.support_vectors_.astype(np.float64),
        "dual_coef": model.dual_coef_.reshape(-1).astype(np.float64),
        "intercept": np.asarray(model.intercept_, dtype=np.float64).reshape(1),
        "gamma": np.array([gamma]),
        "y_mean": np.array([y_mean]),
        "y_scale": np.array([y_scale]),
    }
    params = {"family": "svr", "C": c, "epsilon": epsilon, "gamma_scale": gamma_scale}
    return FittedHead("svr", arrays, params=params)


def _fit_mlp(
    z: np.ndarray,
    y: np.ndarray,
    base: dict[str, np.ndarray],
    hidden: int,
    weight_decay: float,
    steps: int = 400,
    lr: float = 1e-3,
) -> FittedHead:
    """One hidden ReLU layer, full-batch Adam in float32 numpy (seconds for 1,200 x 1,280).

    Early stopping on a 10% slice of train, so the val split stays untouched for selection.
    """
    rng = np.random.default_rng(0)
    y_mean, y_scale = float(y.mean()), float(y.std() or 1.0)
    order = rng.permutation(len(z))
    n_hold = max(1, len(z) // 10) if len(z) >= 20 else 0
    hold, fit_idx = order[:n_hold], order[n_hold:]
    x = z[fit_idx].astype(np.float32)
    t = ((y[fit_idx] - y_mean) / y_scale).astype(np.float32)
    xh = z[hold].astype(np.float32)
    th = ((y[hold] - y_mean) / y_scale).astype(np.float32)
    d = z.shape[1]
    params = {
        "w0": (rng.normal(size=(d, hidden)) * np.sqrt(2.0 / d)).astype(np.float32),
        "b0": np.zeros(hidden, np.float32),
        "w1": (rng.normal(size=(hidden, 1)) * np.sqrt(1.0 / hidden)).astype(np.float32),
        "b1": np.zeros(1, np.float32),
    }
    m = {k: np.zeros_like(v) for k, v in params.items()}
    s = {k: np.zeros_like(v) for k, v in params.items()}
    best = {k: v.copy() for k, v in params.items()}
    best_loss, since_best = np.inf, 0
    for step in range(1, steps + 1):
        pre = x @ params["w0"] + params["b0"]  # [n, hidden]
        h = np.maximum(pre, 0.0)
        out = (h @ params["w1"] + params["b1"]).reshape(-1)
        g_out = (2.0 / len(x)) * (out - t)  # d(mse)/d(out), [n]
        grads = {
            "w1": h.T @ g_out[:, None] + weight_decay * params["w1"],
            "b1": np.array([g_out.sum()], np.float32),
        }
        g_h = (g_out[:, None] @ params["w1"].T) * (pre > 0)
        grads["w0"] = x.T @ g_h + weight_decay * params["w0"]
        grads["b0"] = g_h.sum(axis=0)
        for k, g in grads.items():  # Adam
            m[k] = 0.9 * m[k] + 0.1 * g
            s[k] = 0.999 * s[k] + 0.001 * g * g
            m_hat = m[k] / (1 - 0.9**step)
            s_hat = s[k] / (1 - 0.999**step)
            params[k] -= (lr * m_hat / (np.sqrt(s_hat) + 1e-8)).astype(np.float32)
        if n_hold and step % 10 == 0:
            hh = np.maximum(xh @ params["w0"] + params["b0"], 0.0)
            loss = float(np.mean(((hh @ params["w1"] + params["b1"]).reshape(-1) - th) ** 2))
            if loss < best_loss:
                best_loss, since_best = loss, 0
                best = {k: v.copy() for k, v in params.items()}
            else:
                since_best += 1
                if since_best >= 5:  # 50 steps without improvement
                    break
    final = best if n_hold else params
    arrays = dict(base)
    arrays.update({k: v.astype(np.float64) for k, v in final.items()})
    arrays["y_mean"], arrays["y_scale"] = np.array([y_mean]), np.array([y_scale])
    return FittedHead(
        "mlp", arrays, params={"family": "mlp", "hidden": hidden, "weight_decay": weight_decay}
    )


def _candidates(kind: str) -> list[tuple[Callable[..., FittedHead], dict[str, Any]]]:
    if kind == "ridge":
        return [(_fit_ridge, {})]
    if kind == "svr":
        return [
            (_fit_svr, {"c": g["C"], "epsilon": g["epsilon"], "gamma_scale": g["gamma_scale"]})
            for g in _SVR_GRID
        ]
    if kind == "mlp":
        return [(_fit_mlp, dict(g)) for g in _MLP_GRID]
    raise HeadError(f"unknown head kind {kind!r}; expected one of {HEAD_KINDS}")


def fit_head(kind: str, x_train: np.ndarray, y_train: np.ndarray) -> FittedHead:
    """Fit one head kind (its first grid point) on standardised features."""
    x, y = _check_xy(x_train, y_train, "train")
    mean, scale = _standardiser(x)
    fit, kwargs = _candidates(kind)[0]
    return fit((x - mean) / scale, y, {"x_mean": mean, "x_scale": scale}, **kwargs)


def fit_best_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    kinds: Sequence[str] = HEAD_KINDS,
    log: Callable[[str], None] | None = None,
) -> FittedHead:
    """Fit every candidate of ``kinds`` on train; return the one with the lowest val RMSE.

    With two or more kinds, the blend (mean score) of each kind's best candidate is one more
    candidate: averaging heads that err differently is usually a little better than any one.
    The returned head carries ``val_rmse`` and ``candidates`` (name -> val RMSE of each one
    tried). ``log`` receives one progress line per candidate.
    """
    x, y = _check_xy(x_train, y_train, "train")
    xv, yv = _check_xy(x_val, y_val, "val")
    if xv.shape[1] != x.shape[1]:
        raise HeadError(f"train has {x.shape[1]} features but val has {xv.shape[1]}")
    if not kinds:
        raise HeadError("no head kinds to fit")
    mean, scale = _standardiser(x)
    z = (x - mean) / scale
    base = {"x_mean": mean, "x_scale": scale}
    scores: dict[str, float] = {}
    heads: dict[str, FittedHead] = {}
    best_of_kind: dict[str, FittedHead] = {}

    def judge(head: FittedHead, started: float) -> FittedHead:
        score = rmse(yv, head.predict(xv))
        scored = FittedHead(
            head.kind, head.arrays, transform=head.transform, params=head.params, val_rmse=score
        )
        scores[scored.name], heads[scored.name] = score, scored
        if log:
            log(
                f"  {scored.name:<40} val RMSE {score:7.3f}  ({time.perf_counter() - started:.1f}s)"
            )
        return scored

    for kind in dict.fromkeys(kinds):  # each kind once, in the given order
        for fit, kwargs in _candidates(kind):
            started = time.perf_counter()
            head = judge(fit(z, y, base, **kwargs), started)
            current = best_of_kind.get(kind)
            if current is None or head.val_rmse < (current.val_rmse or np.inf):
                best_of_kind[kind] = head
    if len(best_of_kind) >= 2:
        judge(FittedHead.blend(list(best_of_kind.values())), time.perf_counter())
    name = min(scores, key=scores.__getitem__)
    best = heads[name]
    return FittedHead(
        best.kind,
        best.arrays,
        transform=best.transform,
        params=best.params,
        val_rmse=best.val_rmse,
        candidates=scores,
    )
