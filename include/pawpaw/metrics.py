"""Regression metrics on Pawpularity scores: the one place RMSE, MAE and R^2 are computed."""

from __future__ import annotations

import numpy as np

__all__ = ["mae", "r2", "regression_metrics", "rmse"]


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} targets but {len(y_pred)} predictions")
    if len(y_true) == 0:
        raise ValueError("no rows to score")
    return y_true, y_pred


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((y_pred - y_true) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error."""
    y_true, y_pred = _pair(y_true, y_pred)
    return float(np.mean(np.abs(y_pred - y_true)))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination; 0 on a constant target (no better than the mean)."""
    y_true, y_pred = _pair(y_true, y_pred)
    sst = float(np.sum((y_true - y_true.mean()) ** 2))
    return float(1.0 - np.sum((y_pred - y_true) ** 2) / sst) if sst > 0 else 0.0


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """``rmse``, ``mae`` and ``r2`` of one set of predictions."""
    return {"rmse": rmse(y_true, y_pred), "mae": mae(y_true, y_pred), "r2": r2(y_true, y_pred)}
