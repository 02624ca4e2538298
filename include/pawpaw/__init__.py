"""Pawpularity MLOps: the library behind the DAG, the CLI and the service (no Airflow here).

Lifecycle order, imports flowing from later stages to earlier ones:
``schema``/``config`` (names, settings) -> ``data`` (read, check, sample) and ``synth``
(synthetic pools) -> ``versioning`` (lakeFS commits) -> ``model`` (backbone, heads, the served
pyfunc) -> ``tracking`` (MLflow plumbing) -> ``decisions`` (pure rules), ``registry`` (aliases)
-> ``evaluation``, ``train``, ``drift``, ``export`` -> ``pipeline`` (one function per DAG task)
-> ``cli``/``demo``. Nothing is imported here: ``import pawpaw`` is free.
"""
