"""The one progress channel: stderr for people and pipes, stdout inside an Airflow task."""

from __future__ import annotations

import pytest

from pawpaw.progress import Progress, say

pytestmark = pytest.mark.unit


def test_progress_goes_to_stderr_and_keeps_stdout_for_results(capsys, monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CTX_DAG_ID", raising=False)
    say(True, "working", tag="sample")
    say(False, "hidden")
    out, err = capsys.readouterr()
    assert (out, err) == ("", "[sample] working\n")


def test_inside_an_airflow_task_progress_is_not_logged_as_an_error(capsys, monkeypatch) -> None:
    # Airflow logs a task's stderr at ERROR level; it exports AIRFLOW_CTX_* while a task runs.
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "pawpularity_monthly")
    say(True, "working")
    out, err = capsys.readouterr()
    assert (out, err) == ("working\n", "")


def test_counter_reports_rate_at_most_every_interval_and_at_the_end(capsys, monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CTX_DAG_ID", raising=False)
    counter = Progress(5, "images", tag="t", unit="img", every=3600)
    for _ in range(4):
        counter.advance()
    assert capsys.readouterr().err == ""  # inside the interval, not done yet
    counter.advance(skipped=1)
    line = capsys.readouterr().err
    assert line.startswith("[t] images: 5/5 (1 unchanged, ") and line.endswith(" img/s)\n")
