"""What the production wheel holds, and how the development-only emulator is reached."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_the_library_and_not_the_emulator(tmp_path: Path) -> None:
    # `uv run` tells its children where uv is; else PATH.
    uv = os.environ.get("UV") or shutil.which("uv") or pytest.fail("uv not found (make setup)")
    subprocess.run(
        [uv, "build", "--wheel", "--offline", "-q", "-o", str(tmp_path)], cwd=REPO, check=True
    )
    (wheel,) = tmp_path.glob("pawpaw-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"pawpaw"}
    assert "pawpaw/pipeline.py" in names and "pawpaw/model/pyfunc.py" in names
    assert not [n for n in names if "emulator" in n]


def test_without_the_emulator_the_command_says_what_to_do(monkeypatch) -> None:
    from pawpaw.cli import app

    monkeypatch.setitem(sys.modules, "lakefs_emulator", None)  # as in a wheel install
    result = CliRunner().invoke(app, ["lakefs-emulator"])
    assert result.exit_code == 1
    assert "development tooling" in result.output and "PAWPAW_LAKEFS_ENDPOINT" in result.output
