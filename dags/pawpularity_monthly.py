"""
# Pawpularity — monthly model check

Every month a new sample of shelter photos arrives. This DAG keeps the serving model honest:

1. **sample** — draw this month's sample from the raw pool and commit it to lakeFS
   (the commit id is the dataset's identity; reruns reuse the same commit).
2. **evaluate_champion** — score the serving model (`champion` alias in MLflow) on the
   commit's test split (cached per model version and commit).
3. **has_reference -> drift** — the month measured with the champion that served it, against
   that champion's baseline (the test split of the commit it was trained on): one drift
   verdict (univariate tests, embedding reconstruction error and domain classifier, family-wise
   false-alarm rate `PAWPAW_DRIFT_ALPHA`) and NannyML's estimated RMSE, written to the
   monitoring database (Grafana reads it). Skipped when there is no champion yet or it was
   trained on this very month. A failed drift step fails the run after its retries: the
   month's retraining decision waits for its monitoring instead of going ahead without it.
4. **needs_training** — retrain when there is no champion, `force_retrain` is set, or one of
   the `retrain_on` signals fires: `rmse` (realized RMSE above `threshold_ratio` x the mean
   predictor's), `estimated_rmse` (the label-free estimate above the same limit on the
   baseline), `drift` (the month's verdict is an alert). The log says which fired.
5. **train_challenger -> evaluate_challenger -> should_promote** — promote only when the
   challenger is strictly better on the same test split; then **export** the new champion to
   BentoML (model store + `bentoml build`).

Every task is one call into the `pawpaw.pipeline` function of the same name; XCom carries
only ids and small metric dicts. The trigger form's parameters are the control panel; their
defaults come from the `PAWPAW_*` settings.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Param, TriggerRule, dag, get_current_context, task

from pawpaw.config import RETRAIN_SIGNALS, TRAIN_MODES, get_settings
from pawpaw.schema import FLAGS, MIN_SAMPLE_SIZE
from pawpaw_airflow import pipeline_settings

JOIN = TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
DEFAULTS = get_settings()  # PAWPAW_* environment and .env: the trigger form's defaults


@dag(
    dag_id="pawpularity_monthly",
    schedule="@monthly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["pawpularity", "mlops", "lakefs", "mlflow", "bentoml", "nannyml"],
    default_args={"owner": "pawpaw", "retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "pool": Param(
            None,
            type=["null", "string"],
            description="Raw pool (Kaggle-format folder or zip). Empty: the default pool.",
        ),
        "sample_size": Param(
            DEFAULTS.sample_size,
            type="integer",
            minimum=MIN_SAMPLE_SIZE,
            description=f"Rows to draw (at least {MIN_SAMPLE_SIZE}: drift needs 30 test rows).",
        ),
        "seed": Param(
            None,
            type=["null", "integer"],
            description="Sampling seed. Empty: derived from the month (YYYYMM).",
        ),
        "bias": Param(
            {},
            type="object",
            description='Flag shares to force, e.g. {"Blur": 0.5}: simulates a shifted month.',
            propertyNames={"enum": list(FLAGS)},
            additionalProperties={"type": "number", "minimum": 0, "maximum": 1},
        ),
        "threshold_ratio": Param(
            DEFAULTS.retrain_threshold_ratio,
            type="number",
            minimum=0.1,
            maximum=2.0,
            description="Retrain when champion RMSE > ratio x the mean predictor's RMSE.",
        ),
        "retrain_on": Param(
            list(DEFAULTS.retrain_on),
            type="array",
            items={"type": "string", "enum": list(RETRAIN_SIGNALS)},
            uniqueItems=True,
            description="Signals that trigger retraining: rmse (realized), estimated_rmse "
            "(NannyML DLE, no labels), drift (the month's drift verdict).",
        ),
        "force_retrain": Param(False, type="boolean", description="Train a challenger anyway."),
        "train_mode": Param(
            DEFAULTS.train_mode,
            enum=list(TRAIN_MODES),
            description="head: frozen backbone + regression head (CPU, seconds). "
            "finetune: the full network (GPU path).",
        ),
    },
)
def pawpularity_monthly():
    @task
    def sample() -> dict:
        from pawpaw import pipeline

        ctx = get_current_context()
        params, run = ctx["params"], ctx["dag_run"]
        when = run.logical_date or run.run_after
        seed = params["seed"] if params["seed"] is not None else pipeline.month_seed(when)
        return pipeline.sample(
            pipeline_settings(),
            pool=params["pool"],
            n=params["sample_size"],
            seed=seed,
            bias=params["bias"],
            month=f"{when:%Y-%m}",
        )

    @task
    def evaluate_champion(sampled: dict) -> dict:
        from pawpaw import pipeline

        return pipeline.evaluate_champion(pipeline_settings(), sampled["commit_id"])

    @task.branch
    def has_reference(champion_eval: dict) -> str:
        from pawpaw import pipeline

        reference = pipeline.has_reference(pipeline_settings(), champion_eval)
        print(f"drift reference: {reference or 'none (no champion trained on another commit)'}")
        return "drift" if reference else "no_reference"

    @task
    def drift(sampled: dict, champion_eval: dict) -> dict:
        from pawpaw import pipeline

        return pipeline.drift(
            pipeline_settings(),
            sampled["commit_id"],
            champion_eval,
            month=sampled["month"],
            threshold_ratio=get_current_context()["params"]["threshold_ratio"],
        )

    @task.branch(trigger_rule=JOIN)
    def needs_training(champion_eval: dict, drift_result: dict | None) -> str:
        from pawpaw import pipeline

        params = get_current_context()["params"]
        retrain, reason = pipeline.needs_training(
            champion_eval,
            drift_result,  # None when drift was skipped
            threshold_ratio=params["threshold_ratio"],
            force=params["force_retrain"],
            signals=params["retrain_on"],
        )
        print(f"needs_training={retrain}: {reason}")
        return "train_challenger" if retrain else "skip_training"

    @task
    def train_challenger(sampled: dict) -> dict:
        from pawpaw import pipeline

        mode = get_current_context()["params"]["train_mode"]
        return pipeline.train_challenger(pipeline_settings(), sampled["commit_id"], mode=mode)

    @task
    def evaluate_challenger(sampled: dict, challenger: dict) -> dict:
        from pawpaw import pipeline

        return pipeline.evaluate_challenger(
            pipeline_settings(), sampled["commit_id"], challenger["version"]
        )

    @task.branch
    def should_promote(champion_eval: dict, challenger_eval: dict) -> str:
        from pawpaw import pipeline

        promote_it, reason = pipeline.should_promote(champion_eval, challenger_eval)
        print(f"should_promote={promote_it}: {reason}")
        return "promote" if promote_it else "keep_champion"

    @task
    def promote(challenger: dict) -> dict:
        from pawpaw import pipeline

        return pipeline.promote(pipeline_settings(), challenger["version"])

    @task
    def export() -> dict:
        from pawpaw import pipeline

        return pipeline.export(pipeline_settings())

    sampled = sample()
    champion_eval = evaluate_champion(sampled)
    reference = has_reference(champion_eval)
    no_reference = EmptyOperator(task_id="no_reference")
    drift_result = drift(sampled, champion_eval)
    training = needs_training(champion_eval, drift_result)
    skip_training = EmptyOperator(task_id="skip_training")
    challenger = train_challenger(sampled)
    challenger_eval = evaluate_challenger(sampled, challenger)
    promotion = should_promote(champion_eval, challenger_eval)
    keep_champion = EmptyOperator(task_id="keep_champion")
    promoted = promote(challenger)
    exported = export()
    done = EmptyOperator(task_id="done", trigger_rule=JOIN)

    reference >> [drift_result, no_reference] >> training
    training >> [challenger, skip_training]
    promotion >> [promoted, keep_champion]
    promoted >> exported
    [skip_training, keep_champion, exported] >> done


pawpularity_monthly()
