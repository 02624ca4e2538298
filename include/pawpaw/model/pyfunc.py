"""The servable model: an MLflow pyfunc that turns encoded photos into Pawpularity scores.

Pipeline: decode + timm eval transform (:mod:`pawpaw.model.preprocess`, numpy + PIL) ->
backbone features on ONNX Runtime ``[N, 3, H, W] -> [N, D]`` -> head (:mod:`pawpaw.model.heads`,
numpy) -> score in 1..100, run by the fast :class:`~pawpaw.model.predictor.Predictor` (decoding
overlapped with inference). Artifacts: the backbone ONNX graph, its preprocess config (JSON) and
the head (npz, which also carries the target transform of a fine-tuned head).

The model is logged as *models from code*: this file is the model's code and is executed by
MLflow on load, and ``code_paths`` ships the ``pawpaw`` modules this file imports
(``model.predictor``, ``model.heads``, ``model.preprocess`` and theirs, see
:mod:`pawpaw.vendoring`). Nothing is cloudpickled, so loading needs no training code (no torch,
no sklearn, no ``pawpaw.train``) and works wherever numpy, pillow, onnxruntime, pandas and
mlflow are installed. :func:`save_model` writes such a model to a local folder.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import version as _version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from pawpaw.model.heads import FittedHead
from pawpaw.model.predictor import PredictionError, Predictor
from pawpaw.model.preprocess import PreprocessConfig

__all__ = [
    "ARTIFACTS",
    "IMAGE_COLUMN",
    "PawpularityModel",
    "PredictionError",
    "save_model",
    "serving_requirements",
]

IMAGE_COLUMN = "image"
ARTIFACTS = ("backbone", "preprocess", "head")  # artifact keys of the logged model


class PawpularityModel(mlflow.pyfunc.PythonModel):
    """Photo bytes in, Pawpularity (float64, 1..100) out."""

    def __init__(self) -> None:
        self._predictor: Predictor | None = None

    def load_context(self, context: Any) -> None:
        self.load_artifacts(context.artifacts)

    def load_artifacts(self, artifacts: Mapping[str, str], **options: Any) -> None:
        """Load from artifact paths (``backbone``, ``preprocess``, ``head``) without MLflow.

        ``options`` go to :class:`~pawpaw.model.predictor.Predictor` (providers, lanes, chunk).
        """
        missing = [k for k in ARTIFACTS if k not in artifacts]
        if missing:
            raise FileNotFoundError(f"model artifacts {missing} are missing")
        self._predictor = Predictor.from_files(
            artifacts["backbone"], artifacts["preprocess"], artifacts["head"], **options
        )

    @property
    def predictor(self) -> Predictor:
        """The fast predictor (decoding overlapped with inference); shared by every caller."""
        if self._predictor is None:
            raise RuntimeError("model not loaded: call load_context/load_artifacts first")
        return self._predictor

    @property
    def head(self) -> FittedHead:
        return self.predictor.head

    # Annotated pd.DataFrame (the logged signature's form): MLflow builds no schema of its own
    # from that hint, so the other accepted forms (lists of bytes or arrays) still pass through.
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        """Scores for ``model_input``: a DataFrame with column ``image`` (bytes), or a sequence
        of encoded images (bytes) / decoded uint8 HxWxC arrays. Returns float64 [N] in 1..100.
        """
        return self.predict_images(_images_of(model_input))

    def predict_images(self, images: Sequence[Any]) -> np.ndarray:
        """Scores of a list of images (bytes, uint8 arrays or PIL images), float64 [N]."""
        return self.predictor.predict(images)


def _images_of(model_input: Any) -> list[Any]:
    """The list of images in any accepted input form."""
    if isinstance(model_input, pd.DataFrame):
        if IMAGE_COLUMN not in model_input.columns:
            raise PredictionError(
                f"input needs a column {IMAGE_COLUMN!r}, got columns {list(model_input.columns)}"
            )
        values = model_input[IMAGE_COLUMN].tolist()
    elif isinstance(model_input, pd.Series):
        values = model_input.tolist()
    elif isinstance(model_input, bytes | bytearray):
        values = [model_input]
    elif isinstance(model_input, np.ndarray) and model_input.dtype == np.uint8:
        # One decoded image (HxW[xC]) or a batch (NxHxWxC).
        values = list(model_input) if model_input.ndim == 4 else [model_input]
    elif isinstance(model_input, Mapping) and IMAGE_COLUMN in model_input:
        values = list(model_input[IMAGE_COLUMN])
    elif isinstance(model_input, Sequence | np.ndarray):
        values = list(model_input)
    else:
        raise PredictionError(
            f"expected a DataFrame with column {IMAGE_COLUMN!r} or a list of images, "
            f"got {type(model_input).__name__}"
        )
    return [_one_image(v, i) for i, v in enumerate(values)]


def _one_image(value: Any, row: int) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        # JSON transports binary columns as base64 text.
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PredictionError(f"image #{row}: a string that is not base64 ({exc})") from exc
    if isinstance(value, np.ndarray):
        return value.tobytes() if value.dtype == np.uint8 and value.ndim == 1 else value
    if value is None:
        raise PredictionError(f"image #{row} is missing (None)")
    # PIL images and anything else go to preprocess, which names what it cannot decode.
    return value


def serving_requirements() -> list[str]:
    """What loading and predicting need, pinned to the versions installed here."""
    return [
        f"mlflow=={_version('mlflow')}",
        f"numpy=={_version('numpy')}",
        f"pandas=={_version('pandas')}",
        f"pillow=={_version('pillow')}",
        f"onnxruntime=={_version('onnxruntime')}",
    ]


def _example_jpeg() -> bytes:
    from PIL import Image

    ramp = np.linspace(0, 255, 32, dtype=np.uint8)
    rgb = np.stack(
        [np.tile(ramp, (32, 1)), np.tile(ramp[:, None], (1, 32)), np.full((32, 32), 128, np.uint8)],
        axis=-1,
    )
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def _serving_package(root: Path) -> Path:
    """The ``pawpaw`` modules this file imports (heads, preprocess, ...), to ship as the
    model's code_paths; returns the package folder."""
    from pawpaw.vendoring import vendor_pawpaw

    vendor_pawpaw([Path(__file__).resolve()], root)
    return root / "pawpaw"


@contextmanager
def _no_uv_project() -> Iterator[None]:
    """MLflow copies uv.lock/pyproject.toml of the working directory's uv project into the
    model: that is the whole training environment, not what serving needs."""
    old = os.environ.get("MLFLOW_UV_AUTO_DETECT")
    os.environ["MLFLOW_UV_AUTO_DETECT"] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MLFLOW_UV_AUTO_DETECT", None)
        else:
            os.environ["MLFLOW_UV_AUTO_DETECT"] = old


def save_model(
    path: str | Path,
    *,
    onnx_path: str | Path,
    preprocess_config: PreprocessConfig,
    head: FittedHead,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write the MLflow model (pyfunc flavor) to the empty or missing folder ``path``.

    Signature: input column ``image`` (binary), output double; the input example is a small
    JPEG; requirements are :func:`serving_requirements`.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    path = Path(path)
    signature = ModelSignature(
        inputs=Schema([ColSpec("binary", IMAGE_COLUMN)]), outputs=Schema([ColSpec("double")])
    )
    with tempfile.TemporaryDirectory(prefix="pawpaw-model-") as tmp, _no_uv_project():
        tmp_dir = Path(tmp)
        cfg_path = tmp_dir / "preprocess.json"
        cfg_path.write_text(preprocess_config.to_json())
        head_path = head.to_npz(tmp_dir / "head.npz")
        code = _serving_package(tmp_dir / "code")
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=str(Path(__file__).resolve()),  # models from code: this very file
            artifacts={
                "backbone": str(onnx_path),
                "preprocess": str(cfg_path),
                "head": str(head_path),
            },
            code_paths=[str(code)],
            signature=signature,
            input_example=pd.DataFrame({IMAGE_COLUMN: [_example_jpeg()]}),
            pip_requirements=serving_requirements(),
            metadata={
                "head_kind": head.kind,
                "head": head.name,
                "target_transform": head.transform,
                **dict(metadata or {}),
            },
        )
    return path


# Executed by MLflow as the model's code file (models from code), not when imported as part of
# the library: only then does it declare the model object.
if __name__ != "pawpaw.model.pyfunc":
    mlflow.models.set_model(PawpularityModel())
