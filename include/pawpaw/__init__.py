"""Pawpularity MLOps: the library behind the DAG, the CLI and the service (no Airflow here).

Lifecycle order, imports flowing from later stages to earlier ones:
``schema``/``config`` (names, settings) -> ``data`` (read, check, sample) and ``synth``
(synthetic pools) -> ``versioning`` (lakeFS commits) -> ``model`` (backbone, heads, the served
pyfunc) -> ``tracking`` (MLflow plumbing) -> ``decisions`` (pure rules), ``registry`` (aliases)
-> ``evaluation``, ``train``, ``drift``, ``export`` -> ``pipeline`` (one function per DAG task)
-> ``stack`` (the local services, Airflow's REST API) -> ``cli``/``demo``. Shared by all:
``progress`` (the one progress channel), ``metrics`` (RMSE, MAE, R^2), ``vendoring`` (the
modules a model or bento carries). Nothing is imported here: ``import pawpaw`` is free.
"""
