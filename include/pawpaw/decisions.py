"""The pipeline's decisions as pure functions of evaluation results.

:class:`EvalResult` is one model version's metrics on one commit's test split;
:func:`needs_training` and :func:`should_promote` turn results into a :class:`Decision` (a yes/no
with its reason). The DAG tasks, the pipeline steps and the CLI all call these, under these
names; nothing here touches MLflow, lakeFS or the disk.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from pawpaw.config import RETRAIN_SIGNALS, checked_signals

__all__ = ["Decision", "DriftSignal", "EvalResult", "needs_training", "should_promote"]


@dataclass(frozen=True)
class EvalResult:
    """Metrics of one model version on one commit's test split (JSON-friendly for XCom)."""

    registered_model: str
    version: str
    commit_id: str
    rmse: float
    mae: float
    r2: float
    mean_rmse: float  # RMSE of predicting the train split's mean Pawpularity
    n_test: int
    run_id: str
    noise_floor: float | None = None  # the synthetic generator's best achievable RMSE

    @property
    def ratio(self) -> float:
        """RMSE relative to the mean predictor (< 1: better than knowing nothing)."""
        return self.rmse / self.mean_rmse if self.mean_rmse else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResult:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown EvalResult field(s) {unknown}")
        return cls(**data)

    def summary(self) -> str:
        floor = f", noise floor {self.noise_floor:.3f}" if self.noise_floor is not None else ""
        return (
            f"v{self.version} on commit {self.commit_id[:12]} (n={self.n_test}): "
            f"RMSE {self.rmse:.3f} (mean predictor {self.mean_rmse:.3f}{floor}), "
            f"MAE {self.mae:.3f}, R^2 {self.r2:.3f}"
        )


@dataclass(frozen=True)
class Decision:
    """A yes/no with the reason, as the DAG logs it and branches on it."""

    value: bool
    reason: str

    def __bool__(self) -> bool:
        return self.value

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DriftSignal:
    """What the month's drift step found, as far as retraining cares (see pawpaw.drift)."""

    alert: bool
    reasons: tuple[str, ...]
    estimated_rmse: float
    rmse_limit: float | None  # threshold_ratio x the reference's mean-predictor RMSE

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftSignal:
        """From a ``DriftResult.to_dict()`` (extra keys ignored)."""
        return cls(
            alert=bool(data["alert"]),
            reasons=tuple(data["reasons"]),
            estimated_rmse=float(data["estimated_rmse"]),
            rmse_limit=None if data["rmse_limit"] is None else float(data["rmse_limit"]),
        )


def needs_training(
    champion: EvalResult | None,
    *,
    threshold_ratio: float,
    force: bool = False,
    drift: DriftSignal | None = None,
    signals: tuple[str, ...] | list[str] = RETRAIN_SIGNALS,
) -> Decision:
    """Retrain when forced, when there is no champion, or when one of ``signals`` fires:

    - ``rmse``: the champion's test RMSE on the new commit exceeds ``threshold_ratio`` x that
      commit's mean-predictor RMSE;
    - ``estimated_rmse``: its RMSE estimated without labels exceeds ``drift.rmse_limit``;
    - ``drift``: the month's drift verdict is an alert.

    The reason names every signal that fired (or what each checked signal found).
    """
    signals = checked_signals(signals)
    if force:
        return Decision(True, "retraining was forced")
    if champion is None:
        return Decision(True, "there is no champion yet")
    if not threshold_ratio > 0:
        raise ValueError(f"threshold_ratio must be > 0, got {threshold_ratio}")
    fired, calm = [], []

    def check(signal: str, over: bool, what: str, limit: str) -> None:
        verb = "exceeds" if over else "is within"
        (fired if over else calm).append(f"{signal}: {what} {verb} {limit}")

    if "rmse" in signals:
        limit = threshold_ratio * champion.mean_rmse
        check(
            "rmse",
            champion.rmse > limit,
            f"champion v{champion.version} RMSE {champion.rmse:.3f} on commit "
            f"{champion.commit_id[:12]}",
            f"{threshold_ratio:g} x mean-predictor RMSE {champion.mean_rmse:.3f} = {limit:.3f}",
        )
    if "estimated_rmse" in signals and drift is not None and drift.rmse_limit is not None:
        check(
            "estimated_rmse",
            drift.estimated_rmse > drift.rmse_limit,
            f"estimated RMSE {drift.estimated_rmse:.3f}",
            f"the limit {drift.rmse_limit:.3f}",
        )
    if "drift" in signals and drift is not None:
        if drift.alert:
            fired.append(
                "drift: the month's verdict is an alert (" + "; ".join(drift.reasons) + ")"
            )
        else:
            calm.append("drift: no alert")
    if fired:
        return Decision(True, " | ".join(fired))
    checked = " | ".join(calm) or f"no signal to check (signals {list(signals)}, no drift run)"
    return Decision(False, checked)


def should_promote(champion: EvalResult | None, challenger: EvalResult) -> Decision:
    """Promote only on a strictly lower RMSE on the same commit's test split (ties keep the
    champion); with no champion, promote. Results from different commits are an error."""
    if champion is None:
        return Decision(True, f"no champion: v{challenger.version} becomes the first")
    if champion.commit_id != challenger.commit_id:
        raise ValueError(
            f"cannot compare v{champion.version} on commit {champion.commit_id} with "
            f"v{challenger.version} on commit {challenger.commit_id}: evaluate both on one commit"
        )
    if champion.version == challenger.version:
        return Decision(False, f"v{challenger.version} is already the champion")
    if challenger.rmse < champion.rmse:
        return Decision(
            True,
            f"challenger v{challenger.version} RMSE {challenger.rmse:.3f} < champion "
            f"v{champion.version} RMSE {champion.rmse:.3f}",
        )
    return Decision(
        False,
        f"challenger v{challenger.version} RMSE {challenger.rmse:.3f} is not below champion "
        f"v{champion.version} RMSE {champion.rmse:.3f}",
    )
