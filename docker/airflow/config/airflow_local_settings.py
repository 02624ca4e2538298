"""The compose stack's Airflow cluster policy: full fine-tuning runs on the GPU worker.

Airflow imports this module from ``$AIRFLOW_HOME/config`` (the image copies it to
``/opt/airflow/config``). ``task_instance_mutation_hook`` sends ``train_challenger`` of
``pawpularity_monthly`` to the Celery queue named by ``PAWPAW_GPU_QUEUE`` when the run trains
with ``train_mode=finetune`` (the trigger's conf, else the Param's default, which is the
``PAWPAW_TRAIN_MODE`` setting); the ``airflow-worker-gpu`` service (profile ``gpu``) serves
that queue with the GPU reserved. With ``AIRFLOW_EXECUTOR=LocalExecutor,CeleryExecutor`` the
rest of the DAG keeps running on the LocalExecutor and only this task goes to Celery.

Nothing happens when ``PAWPAW_GPU_QUEUE`` is unset or CeleryExecutor is not configured (the
head mode and every other task are untouched); the scheduler logs why.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger(__name__)

GPU_QUEUE_ENV = "PAWPAW_GPU_QUEUE"
CELERY = "CeleryExecutor"
GPU_TASKS = frozenset({("pawpularity_monthly", "train_challenger")})
GPU_MODE = "finetune"


def _configured_executors() -> list[str]:
    from airflow.configuration import conf

    return [e.strip() for e in conf.get("core", "executor", fallback="").split(",") if e.strip()]


def _train_mode(dag_run: Any) -> str:
    conf = getattr(dag_run, "conf", None) or {}
    if conf.get("train_mode"):
        return str(conf["train_mode"])
    # Scheduled runs carry no conf: the DAG's Param default, read from the same setting.
    from pawpaw.config import get_settings

    return get_settings().train_mode


def route(task_instance: Any, dag_run: Any = None, executors: list[str] | None = None) -> bool:
    """Set ``queue`` (and ``executor``) of a fine-tuning task instance; True if routed."""
    queue = os.environ.get(GPU_QUEUE_ENV, "").strip()
    if not queue or (task_instance.dag_id, task_instance.task_id) not in GPU_TASKS:
        return False
    if _train_mode(dag_run) != GPU_MODE:
        return False
    executors = _configured_executors() if executors is None else executors
    if CELERY not in executors:
        log.warning(
            "%s=%s is set but the executor is %s: %s runs where the executor puts it (no GPU)",
            GPU_QUEUE_ENV, queue, ",".join(executors) or "unset", task_instance.task_id,
        )  # fmt: skip
        return False
    task_instance.queue = queue
    if executors[0] != CELERY:  # the default executor is another one: name Celery explicitly
        task_instance.executor = CELERY
    return True


def task_instance_mutation_hook(task_instance: Any, dag_run: Any = None) -> None:
    route(task_instance, dag_run)
