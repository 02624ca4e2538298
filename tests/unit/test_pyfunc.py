"""The servable MLflow model, on a tiny ONNX "backbone" (mean colour per channel): saved with
its signature and serving-only requirements, loaded without training code, every input form."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pawpaw.model.preprocess import preprocess
from pawpaw.model.pyfunc import PawpularityModel, PredictionError, save_model
from tests.fixtures.models import TINY_CFG as CFG
from tests.fixtures.models import TINY_HEAD as HEAD
from tests.fixtures.models import predict_in_fresh_process
from tests.fixtures.models import tiny_onnx as _tiny_onnx

pytestmark = pytest.mark.unit


def _jpeg(rgb: tuple[int, int, int], size: tuple[int, int] = (24, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _expected(images: list) -> np.ndarray:
    features = preprocess(images, CFG).mean(axis=(2, 3))
    return HEAD.predict(features)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pyfunc")
    onnx_path = _tiny_onnx(root / "tiny.onnx")
    return save_model(
        root / "model",
        onnx_path=onnx_path,
        preprocess_config=CFG,
        head=HEAD,
        metadata={"commit_id": "c0ffee"},
    )


IMAGES = [_jpeg((200, 30, 30)), _jpeg((20, 220, 90)), _jpeg((128, 128, 128), (40, 10))]


def test_saved_model_has_signature_example_and_serving_only_requirements(model_dir: Path) -> None:
    import mlflow
    import yaml

    meta = mlflow.models.get_model_info(str(model_dir))
    assert meta.signature.inputs.to_dict() == [
        {"type": "binary", "name": "image", "required": True}
    ]
    assert meta.signature.outputs.to_dict() == [{"type": "double", "required": True}]
    assert (model_dir / "serving_input_example.json").is_file()
    reqs = (model_dir / "requirements.txt").read_text().split()
    assert sorted(r.split("==")[0] for r in reqs) == [
        "mlflow",
        "numpy",
        "onnxruntime",
        "pandas",
        "pillow",
    ]
    # Models from code: no pickled Python object, and no copy of the training project's lock.
    assert not list(model_dir.rglob("*.pkl"))
    assert not (model_dir / "uv.lock").exists()
    code = model_dir / "code" / "pawpaw"
    shipped = sorted(p.relative_to(code).as_posix() for p in code.rglob("*.py"))
    assert shipped == [
        "__init__.py",
        "metrics.py",
        "model/__init__.py",
        "model/heads.py",
        "model/predictor.py",
        "model/preprocess.py",
        "vendoring.py",
    ]
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    assert mlmodel["metadata"]["commit_id"] == "c0ffee"
    assert mlmodel["metadata"]["target_transform"] == "identity"


def test_predictions_match_preprocess_plus_head(model_dir: Path) -> None:
    import mlflow

    model = mlflow.pyfunc.load_model(str(model_dir))
    got = model.predict(pd.DataFrame({"image": IMAGES}))
    assert isinstance(got, np.ndarray) and got.shape == (3,) and got.dtype == np.float64
    np.testing.assert_allclose(got, _expected(IMAGES), rtol=1e-5)
    # Different colours must give different scores (the model looks at the pixels).
    assert len(set(np.round(got, 3))) == 3


def test_every_input_form_gives_the_same_scores(model_dir: Path) -> None:
    import mlflow

    py = mlflow.pyfunc.load_model(str(model_dir)).unwrap_python_model()
    expected = _expected(IMAGES)
    arrays = [np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in IMAGES]
    b64 = [base64.b64encode(b).decode() for b in IMAGES]
    np.testing.assert_allclose(py.predict(None, IMAGES), expected, rtol=1e-5)
    np.testing.assert_allclose(py.predict(None, arrays), expected, rtol=1e-5)
    np.testing.assert_allclose(py.predict(None, pd.DataFrame({"image": b64})), expected, rtol=1e-5)
    np.testing.assert_allclose(py.predict(None, IMAGES[1]), expected[1:2], rtol=1e-5)
    assert py.predict(None, []).shape == (0,)


def test_bad_input_names_the_problem(model_dir: Path) -> None:
    import mlflow

    py = mlflow.pyfunc.load_model(str(model_dir)).unwrap_python_model()
    # The loaded model's code is MLflow's own copy of the module, so its PredictionError is a
    # different class object: callers catch ValueError, its base.
    with pytest.raises(ValueError, match=r"column 'image'.*\['photo'\]"):
        py.predict(None, pd.DataFrame({"photo": IMAGES}))
    with pytest.raises(ValueError, match="image #2 cannot be decoded"):
        py.predict(None, [*IMAGES[:2], b"\xff\xd8 not a jpeg"])
    with pytest.raises(ValueError, match="image #1 is missing"):
        py.predict(None, [IMAGES[0], None])
    with pytest.raises(RuntimeError, match="not loaded"):
        PawpularityModel().predict_images(IMAGES)
    local = PawpularityModel()
    local.load_artifacts(
        {
            "backbone": str(model_dir / "artifacts" / "tiny.onnx"),
            "preprocess": str(model_dir / "artifacts" / "preprocess.json"),
            "head": str(model_dir / "artifacts" / "head.npz"),
        }
    )
    with pytest.raises(PredictionError, match="image #0 cannot be decoded"):
        local.predict(None, [b"junk"])


def test_fresh_process_loads_without_training_code(model_dir: Path, tmp_path: Path) -> None:
    """A new interpreter (cwd outside the repo) loads and predicts with only serving packages."""
    pred, heavy = predict_in_fresh_process(str(model_dir), IMAGES, tmp_path)
    assert heavy == []
    np.testing.assert_allclose(pred, _expected(IMAGES), rtol=1e-5)
