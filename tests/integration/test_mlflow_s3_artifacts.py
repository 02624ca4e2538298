"""The production artifact path: an MLflow server whose artifacts live in S3 (moto's server
here, MinIO in docker-compose), proxied to clients (`--serve-artifacts`)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from pawpaw.config import Settings
from tests.fixtures.common import free_port, stop_process_group, wait_until
from tests.fixtures.models import TINY_CFG, TINY_HEAD, tiny_onnx

pytestmark = pytest.mark.integration

BUCKET = "mlflow-artifacts"


@pytest.fixture(scope="module")
def s3_mlflow(s3_server, tmp_path_factory):
    s3_server.client().create_bucket(Bucket=BUCKET)
    root = tmp_path_factory.mktemp("mlflow-s3")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [
        str(Path(sys.executable).with_name("mlflow")), "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", f"s3://{BUCKET}/artifacts",
        "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, **s3_server.env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)  # fmt: skip
    wait_until(
        lambda: proc.poll() is None and httpx.get(f"{uri}/health", timeout=2).status_code == 200,
        timeout=120,
        what="mlflow server (S3 artifacts)",
    )
    yield uri
    stop_process_group(proc, timeout=15)
    log.close()


def _jpeg(rgb: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 24), rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_registered_model_is_stored_in_s3_and_loads_back(s3_server, s3_mlflow, tmp_path) -> None:
    from pawpaw import evaluation, registry, train

    settings = Settings(
        data_dir=tmp_path / "data",
        mlflow_tracking_uri=s3_mlflow,
        registered_model=f"s3-{uuid.uuid4().hex[:8]}",
        mlflow_experiment=f"s3-{uuid.uuid4().hex[:8]}",
    )
    _, version = train.register_model(
        settings,
        commit_id="c0ffee" * 10 + "abcd",
        mode="head",
        onnx_path=tiny_onnx(tmp_path / "tiny.onnx"),
        preprocess_config=TINY_CFG,
        backbone_id="tiny",
        head=TINY_HEAD,
        train_key="s3-test",
        progress=False,
    )
    assert registry.alias_version(settings, registry.CHALLENGER) == version

    # The bytes really are in the bucket (not on the server's disk).
    listed = s3_server.client().list_objects_v2(Bucket=BUCKET, Prefix="artifacts/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert any(k.endswith(".onnx") for k in keys), keys
    assert any(k.endswith("MLmodel") for k in keys), keys

    model = evaluation.load_model(settings, version, tmp_path / "dl")
    images = [_jpeg((200, 30, 30)), _jpeg((20, 220, 90))]
    import pandas as pd

    from pawpaw.model.preprocess import preprocess

    expected = TINY_HEAD.predict(preprocess(images, TINY_CFG).mean(axis=(2, 3)))
    np.testing.assert_allclose(model.predict(pd.DataFrame({"image": images})), expected, rtol=1e-5)
