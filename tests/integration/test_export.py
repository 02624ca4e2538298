"""Exporting the MLflow champion into BentoML: provenance labels, idempotency, the CLI, errors.

The registry is a real MLflow store (SQLite under a temporary data dir) holding a tiny pyfunc
registered with the alias ``champion``; the BentoML store is the session's temporary one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pawpaw import export
from pawpaw.config import Settings, get_settings
from pawpaw.tracking import COMMIT_TAG

pytestmark = pytest.mark.integration

MODEL_CODE = """
import mlflow
import numpy as np


class ConstantModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return np.full(len(model_input), 42.0)


mlflow.models.set_model(ConstantModel())
"""


@pytest.fixture(scope="module")
def export_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings on a private MLflow store and the session's BentoML store (own names)."""
    home = tmp_path_factory.getbasetemp() / "bentoml-home"  # BentoML's home is per process
    mp = pytest.MonkeyPatch()
    for key, value in {
        "PAWPAW_DATA_DIR": str(tmp_path_factory.mktemp("export-data")),
        "PAWPAW_BENTOML_HOME": str(home),
        "PAWPAW_BENTO_MODEL": "pawpularity-export-test",
        "PAWPAW_REGISTERED_MODEL": "pawpularity-export-test",
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "MLFLOW_UV_AUTO_DETECT": "false",
    }.items():
        mp.setenv(key, value)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
    mp.undo()


def _register(settings: Settings, tmp: Path, *, commit: str, rmse: float) -> str:
    """Log the tiny model in a run tagged with a commit id, register it, make it champion."""
    import mlflow
    from mlflow import MlflowClient

    code = tmp / "constant_model.py"
    code.write_text(MODEL_CODE)
    client = MlflowClient(settings.tracking_uri)
    mlflow.set_tracking_uri(settings.tracking_uri)
    try:
        experiment = client.get_experiment_by_name("export-test")
        experiment_id = (
            experiment.experiment_id
            if experiment
            else client.create_experiment("export-test", artifact_location=(tmp / "art").as_uri())
        )
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.set_tag(COMMIT_TAG, commit)
            mlflow.log_metric("test_rmse", rmse)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                pip_requirements=["mlflow==3.17.2", "numpy==2.4.6", "pandas==2.3.3"],
                registered_model_name=settings.registered_model,
            )
    finally:
        mlflow.set_tracking_uri(None)  # leave no global state for other tests
    version = str(info.registered_model_version)
    client.set_registered_model_alias(settings.registered_model, "champion", version)
    assert run.info.run_id
    return version


def _count(settings: Settings) -> tuple[int, int]:
    import bentoml
    from bentoml.exceptions import NotFound

    counts = []
    for lister in (bentoml.models.list, bentoml.bentos.list):
        try:
            counts.append(len(lister(settings.bento_model)))
        except NotFound:
            counts.append(0)
    return counts[0], counts[1]


def test_no_champion_is_a_clear_error(export_settings: Settings) -> None:
    with pytest.raises(export.ExportError, match=r"no champion to export.*'champion'"):
        export.export_champion(export_settings)


def test_export_labels_provenance_and_is_idempotent(
    export_settings: Settings, tmp_path: Path
) -> None:
    import bentoml

    version = _register(export_settings, tmp_path, commit="c0ffee", rmse=19.25)
    first = export.export_champion(export_settings)
    assert first.version == version
    assert not first.model_reused and not first.bento_reused
    counts = _count(export_settings)

    again = export.export_champion(export_settings)
    assert (again.model_tag, again.bento_tag) == (first.model_tag, first.bento_tag)
    assert again.model_reused and again.bento_reused
    assert _count(export_settings) == counts

    model = bentoml.models.get(first.model_tag)
    labels = model.info.labels
    assert labels["registered_model"] == export_settings.registered_model
    assert (labels["version"], labels["commit_id"], labels["stage"]) == (
        version,
        "c0ffee",
        "champion",
    )
    assert len(labels["run_id"]) == 32
    assert model.info.metadata["metric.test_rmse"] == pytest.approx(19.25)

    bento = bentoml.bentos.get(first.bento_tag)
    assert bento.info.labels["model_tag"] == first.model_tag
    assert Path(bento.path, "env", "docker", "Dockerfile").is_file()
    pin = json.loads(Path(bento.path, "src", "champion.json").read_text())
    assert pin["model_tag"] == first.model_tag

    # The CLI runs the same export in a fresh process: it reuses both and prints the tags.
    done = subprocess.run(
        [str(Path(sys.executable).with_name("pawpaw")), "export"],
        env=dict(os.environ), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"model:   {first.model_tag}" in done.stdout
    assert f"bento:   {first.bento_tag}" in done.stdout
    assert "(reused)" in done.stderr
    assert _count(export_settings) == counts


def test_a_new_champion_is_exported_as_a_new_model(
    export_settings: Settings, tmp_path: Path
) -> None:
    import bentoml

    before = export.export_champion(export_settings, build=False)
    version = _register(export_settings, tmp_path, commit="beef42", rmse=18.5)
    assert version != before.version
    after = export.export_champion(export_settings, build=False)
    assert after.bento_tag is None and not after.model_reused
    assert after.model_tag != before.model_tag
    labels = bentoml.models.get(after.model_tag).info.labels
    assert (labels["version"], labels["commit_id"]) == (version, "beef42")
    # The earlier champion's model is kept: a rollback reuses it.
    assert bentoml.models.get(before.model_tag).info.labels["version"] == before.version
