"""DAG runs through Airflow's REST API (``/api/v2``), as the UI's Trigger button makes them:
trigger with a logical date and ``conf`` (validated against the DAG's Params: an invalid one is
refused at once), unpause, and follow a run task by task until the scheduler has finished it.

The embedded stack's API server lets everyone in as admin, so no token is needed here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

__all__ = ["FINISHED", "AirflowAPI", "RunError"]

FINISHED = frozenset({"success", "failed"})  # a DAG run's terminal states
_TASK_DONE = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


class RunError(RuntimeError):
    """Airflow refused a request, or a run did not finish in time; the message says which."""


class AirflowAPI:
    """A small client of the Airflow REST API at ``base_url`` (e.g. http://127.0.0.1:8080)."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=f"{self.base_url}/api/v2", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AirflowAPI:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code in ok:
            return None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise RunError(f"{method} {path}: {response.status_code} {detail}")
        return response.json() if response.content else None

    def wait_for_dag(self, dag_id: str, *, timeout: float = 180.0) -> None:
        """Until the DAG processor has parsed ``dag_id`` (new stacks take a few seconds)."""
        deadline = time.monotonic() + timeout
        while self._call("GET", f"/dags/{dag_id}", ok=(404,)) is None:
            if time.monotonic() > deadline:
                raise RunError(
                    f"DAG {dag_id!r} not parsed within {timeout:.0f}s: see the UI's import "
                    "errors and data_dir/logs/airflow-dag-processor.log"
                )
            time.sleep(1.0)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused})

    def trigger(
        self,
        dag_id: str,
        *,
        run_id: str,
        logical_date: datetime,
        conf: dict[str, Any],
        run_after: datetime | None = None,
    ) -> dict[str, Any]:
        """Create the run (its Params are checked now); an existing ``run_id`` is returned as is,
        after its failed tasks, if any, are cleared to run again."""
        body: dict[str, Any] = {
            "dag_run_id": run_id,
            "logical_date": logical_date.isoformat(),
            "conf": conf,
        }
        if run_after is not None:
            body["run_after"] = run_after.isoformat()
        created = self._call("POST", f"/dags/{dag_id}/dagRuns", json=body, ok=(409,))
        if created is not None:
            return created
        existing = self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}", ok=(404,))
        if existing is None:  # the conflict is another run on the same logical date
            raise RunError(
                f"{dag_id} already has a run for logical date {logical_date.isoformat()} (not "
                f"{run_id!r}): see the UI's runs, or trigger another date"
            )
        if existing["state"] == "failed":
            self._call(
                "POST",
                f"/dags/{dag_id}/clearTaskInstances",
                json={"dry_run": False, "dag_run_id": run_id, "only_failed": True},
            )
        return existing

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        found = self._call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return found["task_instances"]

    def follow(
        self,
        dag_id: str,
        run_id: str,
        *,
        on_task: Callable[[dict[str, Any]], None] | None = None,
        timeout: float = 1800.0,
        poll: float = 2.0,
    ) -> dict[str, Any]:
        """Wait until the run finishes; ``on_task`` sees each task once, when it has finished
        (success, failed, skipped, ...). Returns the finished run."""
        deadline = time.monotonic() + timeout
        reported: set[str] = set()
        while True:
            run = self.run(dag_id, run_id)
            tasks = self.task_instances(dag_id, run_id)
            done = sorted(
                (t for t in tasks if t["state"] in _TASK_DONE and t["task_id"] not in reported),
                key=lambda t: (t.get("end_date") or "", t["task_id"]),
            )
            for task in done:
                reported.add(task["task_id"])
                if on_task is not None:
                    on_task(task)
            if run["state"] in FINISHED:
                return run
            if time.monotonic() > deadline:
                raise RunError(
                    f"run {run_id} of {dag_id} still {run['state']} after {timeout:.0f}s"
                )
            time.sleep(poll)
