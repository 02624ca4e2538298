"""The monthly pipeline's steps, one function per DAG task.

Each function takes Settings plus references (lakeFS commit ids, model versions) and returns a
small JSON-friendly dict: that is what travels through Airflow XCom. The DAG in
``dags/pawpularity_monthly.py`` only wires these; ``pawpaw demo`` runs that DAG.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pawpaw.config import Settings

__all__ = [
    "decide_promotion",
    "decide_training",
    "default_pool",
    "evaluate_model",
    "export_champion",
    "find_reference",
    "measure_drift",
    "month_seed",
    "promote_challenger",
    "sample_month",
    "train_challenger",
]


def default_pool(settings: Settings) -> Path:
    """Where `pawpaw demo` writes the synthetic pool and where a run looks when none is given."""
    return settings.data_dir / "pools" / "default"


def month_seed(when: datetime) -> int:
    """A different, reproducible draw for every month (e.g. 202611)."""
    return when.year * 100 + when.month


def sample_month(
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


def evaluate_model(settings: Settings, commit_id: str, version: str | None = None) -> dict:
    """Evaluate a model version (default: the champion) on the commit's test split (cached).

    Returns ``{"evaluation": <EvalResult dict> | None}``; None when there is no champion yet
    (wrapped, because Airflow stores no XCom for a bare None).
    """
    from pawpaw import evaluation

    result = evaluation.evaluate(settings, commit_id, version=version)
    return {"evaluation": None if result is None else result.to_dict()}


def _result(evaluated: dict):
    from pawpaw.evaluation import EvalResult

    return (
        None if evaluated["evaluation"] is None else EvalResult.from_dict(evaluated["evaluation"])
    )


def decide_training(
    champion_eval: dict, *, threshold_ratio: float, force: bool
) -> tuple[bool, str]:
    from pawpaw import registry

    champion = _result(champion_eval)
    decision = registry.needs_training(champion, threshold_ratio=threshold_ratio, force=force)
    return decision.value, decision.reason


def train_challenger(settings: Settings, commit_id: str, *, mode: str) -> dict[str, Any]:
    from pawpaw import train

    result = train.train(settings, commit_id, mode=mode, progress=True)
    return {"version": str(result.version), "run_id": result.run_id, "mode": mode}


def decide_promotion(champion_eval: dict, challenger_eval: dict) -> tuple[bool, str]:
    from pawpaw import registry

    decision = registry.should_promote(_result(champion_eval), _result(challenger_eval))
    return decision.value, decision.reason


def promote_challenger(settings: Settings, version: str) -> dict[str, Any]:
    from pawpaw import registry

    registry.promote(settings, version)
    return {"champion": version}


def export_champion(settings: Settings) -> dict[str, Any]:
    from pawpaw import export

    result = export.export_champion(settings)
    return {"version": result.version, "model": result.model_tag, "bento": result.bento_tag}


def find_reference(settings: Settings, commit_id: str) -> str | None:
    """The drift reference: the most recent other commit that was evaluated."""
    from pawpaw import evaluation

    return evaluation.previous_evaluated_commit(settings, commit_id)


def measure_drift(settings: Settings, commit_id: str) -> dict[str, Any]:
    """NannyML drift of the champion's predictions and image statistics vs the reference."""
    from pawpaw import drift, evaluation, registry, versioning
    from pawpaw.data import image_stats

    reference_commit = find_reference(settings, commit_id)
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
    result = drift.measure_drift(
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
    registry.mlflow_client(settings).log_artifact(champion.run_id, str(report), "drift")
    return result.to_dict()
