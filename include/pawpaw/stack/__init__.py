"""The embedded stack: the local services as one supervised set of real processes.

In start order, each health-checked before the next starts:

==========================  ==================================================================
``lakefs``                  the lakeFS-API emulator (skipped when ``PAWPAW_LAKEFS_ENDPOINT``
                            names a lakeFS on another host)
``mlflow``                  MLflow server: SQLite store + a local artifact root (``file:`` URIs,
                            so every command works the same once the stack is down)
``airflow-api-server``      Airflow's REST API and UI (simple auth manager, everyone admin)
``airflow-scheduler``       with the LocalExecutor (its task workers run in its process group)
``airflow-dag-processor``   parses ``dags/``
``airflow-triggerer``       deferred tasks
``bento``                   ``bentoml serve`` of the champion's bento, once one is exported
==========================  ==================================================================

What is running lives in ``data_dir/stack.json`` (pids, process groups, URLs, log files);
logs go to ``data_dir/logs/<service>.log``. Each service runs in a process group of its own,
so :func:`down` stops servers together with their workers. :func:`up` twice starts only what is
missing; a port held by another program is an error naming that program.
"""

from pawpaw.stack.control import (
    ServiceStatus,
    down,
    running_overrides,
    status,
    stopping_on_signals,
    up,
)
from pawpaw.stack.processes import StackError
from pawpaw.stack.services import SERVICES

__all__ = [
    "SERVICES",
    "ServiceStatus",
    "StackError",
    "down",
    "running_overrides",
    "status",
    "stopping_on_signals",
    "up",
]
