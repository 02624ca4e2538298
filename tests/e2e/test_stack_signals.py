"""`pawpaw up` interrupted while it starts the stack (SIGTERM, SIGHUP, Ctrl-C's SIGINT) stops
what it has started: no process of the stack remains and no port stays bound."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.common import assert_nothing_listens, free_port, live_in_groups, wait_until

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_an_interrupted_up_stops_what_it_started(sig: signal.Signals, tmp_path: Path) -> None:
    data = tmp_path / "data"
    ports = {name: free_port() for name in ("MLFLOW", "AIRFLOW", "SERVE", "LAKEFS")}
    env = {
        **os.environ,
        "PAWPAW_DATA_DIR": str(data),
        "PAWPAW_LAKEFS_ENDPOINT": f"http://127.0.0.1:{ports['LAKEFS']}",
        "PAWPAW_MLFLOW_PORT": str(ports["MLFLOW"]),
        "PAWPAW_AIRFLOW_PORT": str(ports["AIRFLOW"]),
        "PAWPAW_SERVE_PORT": str(ports["SERVE"]),
        "PAWPAW_MONITORING_DB_URL": f"sqlite:///{data / 'monitoring.db'}",
    }
    up = subprocess.Popen(
        [str(Path(sys.executable).with_name("pawpaw")), "up", "--no-bento"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    state = data / "stack.json"

    def started(name: str) -> bool:
        return state.is_file() and name in json.loads(state.read_text())["services"]

    try:
        wait_until(lambda: started("mlflow"), timeout=120, what="pawpaw up starting mlflow")
        recorded = json.loads(state.read_text())["services"]
        groups = {g for record in recorded.values() for g in record["pgids"]}
        up.send_signal(sig)
        output, _ = up.communicate(timeout=90)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 130, output
    assert "stopping the stack" in output and "lakefs" in output
    assert json.loads(state.read_text())["services"] == {}
    assert groups and live_in_groups(groups) == []
    for port in (ports["LAKEFS"], ports["MLFLOW"]):
        assert_nothing_listens(port)
