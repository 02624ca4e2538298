"""The monthly pipeline's steps: one function per DAG task, under the task's own name.

Each function takes Settings plus references (lakeFS commit ids, model versions) and returns a
small JSON-friendly dict: that is what travels through Airflow XCom. The DAG in
``dags/pawpularity_monthly.py`` only wires these; each one is a single call into the library:

=====================  ==========================================================
DAG task / function    library
=====================  ==========================================================
``sample``             :func:`pawpaw.versioning.commit_sample`
``evaluate_champion``  :func:`pawpaw.evaluation.evaluate` (the ``champion`` alias)
``has_reference``      :func:`pawpaw.registry.training_commit` (the champion's baseline)
``drift``              :func:`pawpaw.drift.measure_drift`
``needs_training``     :func:`pawpaw.decisions.needs_training`
``train_challenger``   :func:`pawpaw.train.train`
``evaluate_challenger`` :func:`pawpaw.evaluation.evaluate` (the new version)
``should_promote``     :func:`pawpaw.decisions.should_promote`
``promote``            :func:`pawpaw.registry.promote`
``export``             :func:`pawpaw.export.export_champion`
=====================  ==========================================================
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pawpaw.config import Settings

if TYPE_CHECKING:
    from pawpaw.decisions import EvalResult

__all__ = [
    "default_pool",
    "drift",
    "evaluate_challenger",
    "evaluate_champion",
    "export",
    "has_reference",
    "month_seed",
    "needs_training",
    "promote",
    "sample",
    "should_promote",
    "train_challenger",
]


def default_pool(settings: Settings) -> Path:
    """Where `pawpaw demo` writes the synthetic pool and where a run looks when none is given."""
    return settings.data_dir / "pools" / "default"


def month_seed(when: datetime) -> int:
    """A different, reproducible draw for every month (e.g. 202611)."""
    return when.year * 100 + when.month


def sample(
    settings: Settings,
    *,
    pool: str | None,
    n: int,
    seed: int,
    bias: dict[str, float],
    month: str,
) -> dict[str, Any]:
    """Draw this month's sample from the raw pool and commit it to lakeFS (idempotent by key)."""
    from pawpaw import versioning
    from pawpaw.data import kaggle
    from pawpaw.data.sampling import SampleSpec, sample_key

    pool_path = Path(pool) if pool else default_pool(settings)
    data = kaggle.read_dataset(pool_path)
    spec = SampleSpec(
        n=n,
        seed=seed,
        val_fraction=settings.val_fraction,
        test_fraction=settings.test_fraction,
        bias=dict(bias),
    )
    key = sample_key(pool_path, spec, month=month)
    result = versioning.commit_sample(settings, data, spec, key=key, progress=True)
    return {"commit_id": result.commit_id, "created": result.created, "key": key, "month": month}


def _evaluated(result: EvalResult | None) -> dict[str, Any]:
    # Wrapped: Airflow stores no XCom for a bare None (no champion yet).
    return {"evaluation": None if result is None else result.to_dict()}


def _result(evaluated: dict[str, Any]) -> EvalResult | None:
    from pawpaw.decisions import EvalResult

    found = evaluated["evaluation"]
    return None if found is None else EvalResult.from_dict(found)


def evaluate_champion(settings: Settings, commit_id: str) -> dict[str, Any]:
    """The champion on the commit's test split (stored once per version and commit);
    ``{"evaluation": None}`` when there is no champion yet."""
    from pawpaw.evaluation import evaluate

    return _evaluated(evaluate(settings, commit_id))


def needs_training(
    champion_eval: dict[str, Any],
    drift_result: dict[str, Any] | None,
    *,
    threshold_ratio: float,
    force: bool,
    signals: list[str] | tuple[str, ...],
) -> tuple[bool, str]:
    """Retrain? (yes/no, the reason). ``drift_result`` is None when drift did not run."""
    from pawpaw import decisions

    decision = decisions.needs_training(
        _result(champion_eval),
        threshold_ratio=threshold_ratio,
        force=force,
        drift=None if drift_result is None else decisions.DriftSignal.from_dict(drift_result),
        signals=tuple(signals),
    )
    return decision.value, decision.reason


def train_challenger(settings: Settings, commit_id: str, *, mode: str) -> dict[str, Any]:
    """Train on the commit and register the result as ``challenger``."""
    from pawpaw.train import train

    result = train(settings, commit_id, mode=mode, progress=True)
    return {"version": str(result.version), "run_id": result.run_id, "mode": mode}


def evaluate_challenger(settings: Settings, commit_id: str, version: str) -> dict[str, Any]:
    """The new version on the same test split as the champion."""
    from pawpaw.evaluation import evaluate

    return _evaluated(evaluate(settings, commit_id, version=version))


def should_promote(
    champion_eval: dict[str, Any], challenger_eval: dict[str, Any]
) -> tuple[bool, str]:
    """Promote? (yes/no, the reason)."""
    from pawpaw import decisions

    decision = decisions.should_promote(_result(champion_eval), _result(challenger_eval))
    return decision.value, decision.reason


def promote(settings: Settings, version: str) -> dict[str, Any]:
    """``version`` becomes champion (the old one becomes ``previous``)."""
    from pawpaw import registry

    registry.promote(settings, version)
    return {"champion": version}


def export(settings: Settings) -> dict[str, Any]:
    """The champion into the BentoML store, and its bento."""
    from pawpaw.export import export_champion

    result = export_champion(settings)
    return {"version": result.version, "model": result.model_tag, "bento": result.bento_tag}


def _served(settings: Settings, champion_eval: dict[str, Any]) -> EvalResult | None:
    """The model that served the month: the champion at the start of its first run. A rerun
    after a promotion finds the version that measured the month before (its drift rows are
    stored) and keeps measuring with it, so rerunning replaces those rows instead of adding a
    second model's view."""
    from pawpaw import evaluation
    from pawpaw.drift.store import served_versions

    champion = _result(champion_eval)
    if champion is None:
        return None
    earlier = served_versions(settings, champion.commit_id)
    if not earlier or champion.version in earlier:
        return champion
    return evaluation.evaluate(settings, champion.commit_id, version=earlier[-1])


def has_reference(settings: Settings, champion_eval: dict[str, Any]) -> str | None:
    """The drift reference: the commit the model that served this month was trained on (its
    test split is that model's baseline), or None when there is no champion or it was trained
    on this very commit (nothing to compare)."""
    from pawpaw.registry import training_commit

    served = _served(settings, champion_eval)
    if served is None:
        return None
    reference = training_commit(settings, served.version)
    return None if reference == served.commit_id else reference


def drift(
    settings: Settings,
    commit_id: str,
    champion_eval: dict[str, Any],
    *,
    month: str,
    threshold_ratio: float,
    reference_commit: str | None = None,
) -> dict[str, Any]:
    """The month's drift verdict and estimated RMSE for the champion that served it, against
    that champion's baseline (or ``reference_commit``'s test split, scored by the same model);
    ``month`` (YYYY-MM) is the DAG run's logical month. Rerunning replaces the stored rows."""
    from pawpaw import evaluation, versioning
    from pawpaw.drift import measure_drift
    from pawpaw.drift.frames import drift_frame
    from pawpaw.tracking import mlflow_client

    champion = _served(settings, champion_eval)
    if champion is None:
        raise ValueError(f"commit {commit_id}: there is no champion, so no model served it")
    reference_commit = reference_commit or has_reference(settings, champion_eval)
    if reference_commit is None:
        raise ValueError(
            f"commit {commit_id}: v{champion.version} was trained on it, so its baseline is this "
            "month itself: give another commit as the reference"
        )
    if reference_commit == champion.commit_id:
        raise ValueError(f"commit {commit_id} cannot be its own drift reference")
    version = champion.version
    # The champion's evaluation on its own training commit: normally stored at promotion.
    baseline = evaluation.evaluate(settings, reference_commit, version=version)
    assert baseline is not None  # an explicit version always evaluates (or raises)
    frames = {
        commit: drift_frame(
            settings,
            versioning.load_split(settings, commit, "test"),
            evaluation.load_predictions(settings, version, commit),
            progress=True,
        )
        for commit in (reference_commit, champion.commit_id)
    }
    # The embedded profile's "dashboard": NannyML's plots, kept with the champion's evaluation.
    report = settings.data_dir / "reports" / f"drift-{commit_id[:12]}-v{version}.html"
    result = measure_drift(
        settings,
        reference=frames[reference_commit],
        analysis=frames[champion.commit_id],
        reference_commit=reference_commit,
        analysis_commit=champion.commit_id,
        model_version=version,
        month=month,
        rmse_limit=threshold_ratio * baseline.mean_rmse,
        report_path=report,
        progress=True,
    )
    mlflow_client(settings).log_artifact(champion.run_id, str(report), "drift")
    return result.to_dict()
