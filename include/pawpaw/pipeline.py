"""The monthly pipeline's steps: one function per DAG task, under the task's own name.

Each function takes Settings plus references (lakeFS commit ids, model versions) and returns a
small JSON-friendly dict: that is what travels through Airflow XCom. The DAG in
``dags/pawpularity_monthly.py`` only wires these; each one is a single call into the library:

=====================  ==========================================================
DAG task / function    library
=====================  ==========================================================
``sample``             :func:`pawpaw.versioning.commit_sample`
``evaluate_champion``  :func:`pawpaw.evaluation.evaluate` (the ``champion`` alias)
``needs_training``     :func:`pawpaw.decisions.needs_training`
``train_challenger``   :func:`pawpaw.train.train`
``evaluate_challenger`` :func:`pawpaw.evaluation.evaluate` (the new version)
``should_promote``     :func:`pawpaw.decisions.should_promote`
``promote``            :func:`pawpaw.registry.promote`
``export``             :func:`pawpaw.export.export_champion`
``has_reference``      :func:`pawpaw.evaluation.previous_evaluated_commit`
``drift``              :func:`pawpaw.drift.measure_drift`
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
    return {"commit_id": result.commit_id, "created": result.created, "key": key}


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
    champion_eval: dict[str, Any], *, threshold_ratio: float, force: bool
) -> tuple[bool, str]:
    """Retrain? (yes/no, the reason)."""
    from pawpaw import decisions

    decision = decisions.needs_training(
        _result(champion_eval), threshold_ratio=threshold_ratio, force=force
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


def has_reference(settings: Settings, commit_id: str) -> str | None:
    """The drift reference: the newest evaluated sample commit before this one (or None)."""
    from pawpaw.evaluation import previous_evaluated_commit

    return previous_evaluated_commit(settings, commit_id)


def drift(settings: Settings, commit_id: str) -> dict[str, Any]:
    """NannyML drift of the champion's predictions and image statistics vs the reference."""
    from pawpaw import evaluation, versioning
    from pawpaw.data import image_stats
    from pawpaw.drift import measure_drift
    from pawpaw.tracking import mlflow_client

    reference_commit = has_reference(settings, commit_id)
    if reference_commit is None:
        raise ValueError(f"no evaluated commit before {commit_id}: nothing to compare with")
    champion = evaluation.evaluate(settings, commit_id)
    if champion is None:
        raise ValueError("there is no champion model: drift needs one")
    version = str(champion.version)
    evaluation.evaluate(settings, reference_commit, version=version)  # cached when it exists

    frames, times = {}, {}
    for name, commit in (("reference", reference_commit), ("analysis", commit_id)):
        predictions = evaluation.load_predictions(settings, version, commit)
        stats = image_stats.describe_images(versioning.load_split(settings, commit, "test"))
        frames[name] = predictions.merge(stats, on="Id", validate="one_to_one")
        times[name] = versioning.commit_time(settings, commit)

    # The embedded profile's "dashboard": NannyML's plots, kept with the champion's evaluation.
    report = settings.data_dir / "reports" / f"drift-{commit_id[:12]}-v{version}.html"
    result = measure_drift(
        settings,
        reference=frames["reference"],
        analysis=frames["analysis"],
        reference_commit=reference_commit,
        analysis_commit=commit_id,
        model_version=version,
        reference_time=times["reference"],
        analysis_time=times["analysis"],
        report_path=report,
    )
    mlflow_client(settings).log_artifact(champion.run_id, str(report), "drift")
    return result.to_dict()
