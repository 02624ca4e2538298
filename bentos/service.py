"""The Pawpularity BentoML service: the champion model behind an API and a volunteer's page.

Endpoints (all POST except the page):

- ``/predict``: multipart ``images`` (one or more files) -> list of scores (1-100). Adaptive
  batching merges concurrent requests into one model call.
- ``/advise``: multipart ``image`` -> ``{"score", "advice": [{"code", "message", "severity"}]}``.
- ``/info``: which model is served (its BentoML tag and MLflow provenance labels).
- ``/``: the upload page (``page.py``); ``/livez``, ``/readyz``, ``/metrics`` come with BentoML.

Which model: ``PAWPAW_BENTO_MODEL_TAG`` if set, else the tag pinned in ``champion.json`` (written
by ``pawpaw export`` into the bento it builds), else ``<PAWPAW_BENTO_MODEL>:latest``.

GPU: ``PAWPAW_SERVE_GPU=1`` at build time makes the image install ``onnxruntime-gpu`` and sets
the variable in the image; at serve time it reserves one GPU (``resources={"gpu": 1}``:
BentoML then sets ``CUDA_VISIBLE_DEVICES`` for the worker). Unset, the service is CPU-only and
asks for no GPU, so ``bentoml serve`` works on machines without one.
"""

import json
import os
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import bentoml
import numpy as np
from page import app as page_app
from pydantic import AfterValidator, BaseModel, Field
from uploads import MAX_REQUEST_BYTES, BodySizeLimit, MultipartGuard, check_upload

from pawpaw.advice import advise as advise_photo

_HERE = Path(__file__).resolve().parent
PIN_FILE = _HERE / "champion.json"  # {"model_tag": ..., "labels": {...}}: written by export
MODEL_REQUIREMENTS = _HERE / "model-requirements.txt"  # the MLflow model's own requirements

SERVE_GPU = os.environ.get("PAWPAW_SERVE_GPU", "").strip().lower() in {"1", "true", "yes"}

# What the service itself needs (onnxruntime: the model's backbone runs on it). Pinned to the
# versions installed where the bento is built, i.e. the ones the tests ran with. The model's
# own pins (MODEL_REQUIREMENTS) are added on top and win where they differ.
SERVING_PACKAGES = ("mlflow", "numpy", "onnxruntime", "pandas", "pillow")
MAX_BATCH_SIZE = 32  # ONNX Runtime on CPU gains little beyond this; bounds memory per call
MAX_LATENCY_MS = 1000  # a request waits at most this long for a batch to fill and run


def model_tag() -> str:
    """The BentoML model this service loads (see the module docstring for the order)."""
    if tag := os.environ.get("PAWPAW_BENTO_MODEL_TAG", "").strip():
        return tag
    if PIN_FILE.is_file():
        return json.loads(PIN_FILE.read_text())["model_tag"]
    return f"{os.environ.get('PAWPAW_BENTO_MODEL', 'pawpularity')}:latest"


def requirements(gpu: bool = SERVE_GPU) -> list[str]:
    """The image's Python requirements: ours, the model's, onnxruntime-gpu on GPU builds."""
    merged = {name: _pinned(name) for name in SERVING_PACKAGES}
    if MODEL_REQUIREMENTS.is_file():
        for line in MODEL_REQUIREMENTS.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line or line.startswith("-"):  # options (-r, -c, --index-url) are not ours
                continue
            # The model was validated with its pins: they win; its bare names do not unpin ours.
            if _project(line) not in merged or re.search(r"[<>=!~@]", line):
                merged[_project(line)] = line
    if gpu and "onnxruntime" in merged:
        # Both wheels provide the `onnxruntime` module; only the GPU one may be installed.
        merged["onnxruntime"] = ONNXRUNTIME_GPU
    return sorted(merged.values())


# The GPU image's ONNX Runtime, pinned exactly: its `cuda` and `cudnn` extras pull CUDA 13 and
# cuDNN 9 from PyPI (nvidia-* wheels) onto the plain Python base image, and `preload_dlls()`
# (>= 1.21) loads them before a session asks for the CUDA provider. A range would admit
# releases without those extras or built for another CUDA major, which silently fall back to
# the CPU. onnxruntime-gpu releases lag the CPU wheel's, so the CPU pin cannot carry over.
# Host: an NVIDIA driver >= 580 (CUDA 13.x; 580.65.06 or newer) and the NVIDIA container
# toolkit. tests/unit/test_compose_bento.py checks the pin and that it resolves.
ONNXRUNTIME_GPU_VERSION = "1.31.1"
ONNXRUNTIME_GPU = f"onnxruntime-gpu[cuda,cudnn]=={ONNXRUNTIME_GPU_VERSION}"
MIN_NVIDIA_DRIVER = "580.65.06"


def _pinned(name: str) -> str:
    try:
        return f"{name}=={version(name)}"
    except PackageNotFoundError:  # not installed where the bento is built: left unpinned
        return name


def _project(requirement: str) -> str:
    """PEP 503 normalised project name of a requirement line."""
    name = re.split(r"[\s<>=!~;\[@(]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


class AdviceItem(BaseModel):
    code: str
    message: str
    severity: str


class Assessment(BaseModel):
    score: float = Field(description="Pawpularity, 1-100")
    advice: list[AdviceItem]


# Each uploaded file is checked while the request is parsed (HTTP 400 naming the problem), so a
# bad photo never joins a batch with other requests' photos.
UploadedImage = Annotated[Path, AfterValidator(check_upload)]


@bentoml.asgi_app(page_app, path="/")
@bentoml.service(
    name="pawpularity",
    image=bentoml.images.Image(python_version="3.11", lock_python_packages=False).python_packages(
        *requirements()
    ),
    resources={"gpu": 1} if SERVE_GPU else {},
    envs=[{"name": "PAWPAW_SERVE_GPU", "value": "1"}] if SERVE_GPU else [],
    workers=1,  # one process; ONNX Runtime already uses every core it is given
    traffic={"timeout": 60, "max_concurrency": 64},
    labels={"project": "pawpaw", "device": "gpu" if SERVE_GPU else "cpu"},
)
class PawpularityService:
    """Scores pet photos for adoption appeal and tells volunteers how to take better ones."""

    model_ref = bentoml.models.BentoModel(model_tag())

    def __init__(self) -> None:
        import bentoml.mlflow

        if SERVE_GPU:
            import onnxruntime

            # Load CUDA/cuDNN from the nvidia-* wheels before any session asks for them.
            if hasattr(onnxruntime, "preload_dlls"):
                onnxruntime.preload_dlls()
        stored = self.model_ref  # the descriptor resolves the tag in the model store
        self.model = bentoml.mlflow.load_model(stored)
        self.model_info = {"tag": str(stored.tag), "labels": dict(stored.info.labels)}

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, images: list[UploadedImage]) -> list[float]:
        return self.score([path.read_bytes() for path in images])

    @bentoml.api
    def advise(self, image: UploadedImage) -> Assessment:
        return self.assess(image.read_bytes())

    @bentoml.api
    def info(self) -> dict[str, Any]:
        return self.model_info

    def score(self, images: list[bytes]) -> list[float]:
        """Scores for encoded images, in order (the pyfunc contract: a DataFrame `image`)."""
        import pandas as pd

        if not images:
            return []
        raw = self.model.predict(pd.DataFrame({"image": images}))
        scores = np.asarray(raw, dtype=np.float64).reshape(-1)
        if scores.shape[0] != len(images) or not np.isfinite(scores).all():
            raise RuntimeError(
                f"model {self.model_info['tag']} returned {scores.shape[0]} scores "
                f"for {len(images)} images (or non-finite values)"
            )
        return scores.tolist()

    def assess(self, image: bytes) -> Assessment:
        """Score one photo and explain how to improve it (used by /advise and the page)."""
        score = self.score([image])[0]
        advice = [AdviceItem(**a.to_dict()) for a in advise_photo(image, score)]
        return Assessment(score=score, advice=advice)


# Outermost first: bound the body, then check the API's multipart shape.
PawpularityService.add_asgi_middleware(BodySizeLimit, max_bytes=MAX_REQUEST_BYTES)
PawpularityService.add_asgi_middleware(
    MultipartGuard, fields={"/predict": "images", "/advise": "image"}
)
