"""The Pawpularity BentoML service: the champion model behind an API and a volunteer's page.

Endpoints (all POST except the page):

- ``/predict``: multipart ``images`` (one or more files) -> list of scores (1-100). Adaptive
  batching merges concurrent requests into one model call.
- ``/advise``: multipart ``image`` -> ``{"score", "advice": [{"code", "message", "severity"}]}``.
- ``/info``: which model is served: ``tag``, ``version`` (the MLflow registered version),
  ``source`` (``bentoml``: the pinned model; ``mlflow``: swapped in since) and its provenance
  ``labels`` (registered model, version, run id, lakeFS commit id).
- ``/``: the upload page (``page.py``); ``/livez``, ``/readyz``, ``/metrics`` come with BentoML.

Which model: at start ``PAWPAW_BENTO_MODEL_TAG`` if set, else the tag pinned in ``champion.json``
(written by ``pawpaw export`` into the bento it builds), else ``<PAWPAW_BENTO_MODEL>:latest``;
then the service follows the MLflow ``champion`` alias and swaps models without a restart
(``champion.py``: mechanism, settings, and why).

Speed (measured on 2 CPU cores, README "Serving"): every request's photos are scored by the
model's fast predictor (``pawpaw.model.predictor``): decoding overlapped with one-thread ONNX
Runtime runs. On CPU the service runs one worker process per core, each predictor with one
lane, so request parsing, decoding and inference all run in parallel. BentoML's adaptive
batching is off on CPU: batches are slower per image there than single photos on parallel
lanes (measured: batching on cost 14 % at concurrency 8 and failed requests at 32). On GPU one
process owns the device and batching is on (``PAWPAW_SERVE_BATCHING`` overrides).

GPU: ``PAWPAW_SERVE_GPU=1`` at build time makes the image install ``onnxruntime-gpu`` and sets
the variable in the image; at serve time it reserves one GPU (``resources={"gpu": 1}``:
BentoML then sets ``CUDA_VISIBLE_DEVICES`` for the worker) and refuses to start (and to swap in
a model) unless ONNX Runtime runs the model with its CUDA provider. Unset, the service is
CPU-only and asks for no GPU, so ``bentoml serve`` works on machines without one.
"""

import json
import os
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import bentoml
from champion import ChampionFollower, Served, load_stored, poll_seconds, tracking_uri
from page import app as page_app
from pydantic import BaseModel, Field
from uploads import MAX_REQUEST_BYTES, BodySizeLimit, MultipartGuard, UploadedImage

from pawpaw.advice import advise as advise_photo
from pawpaw.model.predictor import CUDA, LANES_ENV, ProviderError, execution_providers

_HERE = Path(__file__).resolve().parent
PIN_FILE = _HERE / "champion.json"  # {"model_tag": ..., "labels": {...}}: written by export
MODEL_REQUIREMENTS = _HERE / "model-requirements.txt"  # the MLflow model's own requirements


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name, "").strip().lower()
    return value in {"1", "true", "yes"} if value else default


SERVE_GPU = _flag("PAWPAW_SERVE_GPU")

# What the service itself needs (onnxruntime: the model's backbone runs on it). Pinned to the
# versions installed where the bento is built, i.e. the ones the tests ran with. The model's
# own pins (MODEL_REQUIREMENTS) are added on top and win where they differ.
SERVING_PACKAGES = ("mlflow", "numpy", "onnxruntime", "pandas", "pillow")
# Adaptive batching (GPU): up to 32 photos per call, a photo waits at most 200 ms. On CPU it is
# off (measured: single photos on parallel one-thread lanes beat any batch; see module doc).
BATCHING = _flag("PAWPAW_SERVE_BATCHING", default=SERVE_GPU)
MAX_BATCH_SIZE = 32
MAX_LATENCY_MS = 200
# Threads that run requests: they wait on the predictor's lanes, which bound the work in
# flight, so more threads than cores cost nothing and keep every lane fed.
REQUEST_THREADS = 16
MAX_CPU_WORKERS = 8  # a big host should run several replicas, not one service with 64 workers


def _workers() -> int:
    """Worker processes: on GPU one (it owns the device); on CPU one per usable core (CPU
    affinity, i.e. a container's cpuset), at most MAX_CPU_WORKERS, each predictor with one
    lane, so request parsing, decoding and inference all run in parallel (README "Serving"
    has the measurements). ``PAWPAW_SERVE_WORKERS`` overrides."""
    raw = os.environ.get("PAWPAW_SERVE_WORKERS", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"PAWPAW_SERVE_WORKERS must be a positive integer, got {raw!r}")
        return int(raw)
    return 1 if SERVE_GPU else max(1, min(MAX_CPU_WORKERS, len(os.sched_getaffinity(0))))


WORKERS = _workers()


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
# bad photo never joins a batch with other requests' photos (uploads.UploadedImage).


@bentoml.asgi_app(page_app, path="/")
@bentoml.service(
    name="pawpularity",
    image=bentoml.images.Image(python_version="3.11", lock_python_packages=False).python_packages(
        *requirements()
    ),
    resources={"gpu": 1} if SERVE_GPU else {},
    envs=[{"name": "PAWPAW_SERVE_GPU", "value": "1"}] if SERVE_GPU else [],
    workers=WORKERS,
    threads=REQUEST_THREADS,
    traffic={"timeout": 60, "max_concurrency": 64},
    labels={"project": "pawpaw", "device": "gpu" if SERVE_GPU else "cpu"},
)
class PawpularityService:
    """Scores pet photos for adoption appeal and tells volunteers how to take better ones."""

    model_ref = bentoml.models.BentoModel(model_tag())

    def __init__(self) -> None:
        if SERVE_GPU:
            import onnxruntime

            # Load CUDA/cuDNN from the nvidia-* wheels before any session asks for them.
            if hasattr(onnxruntime, "preload_dlls"):
                onnxruntime.preload_dlls()
            execution_providers(require_cuda=True)  # refuse to start on a CPU-only runtime
        if WORKERS > 1:
            # One lane per worker process (the processes share the cores); an explicit
            # PAWPAW_PREDICT_LANES wins. Read by every model this worker loads.
            os.environ.setdefault(LANES_ENV, "1")
        served = load_stored(self.model_ref)  # the descriptor resolves the tag in the store
        _check_device(served)
        self._served = served  # replaced whole by the follower: one reference assignment
        self.follower: ChampionFollower | None = None
        uri, registered = tracking_uri(), served.info["labels"].get("registered_model")
        interval = poll_seconds()
        if uri and registered and interval > 0:
            self.follower = ChampionFollower(
                uri=uri,
                registered_model=registered,
                current=lambda: self._served,
                swap=self._install,
                interval=interval,
                check=_check_device,
            ).start()

    def _install(self, served: Served) -> None:
        self._served = served

    def __is_ready__(self) -> bool:
        return self._served is not None  # during a swap the previous model still serves

    @bentoml.api(batchable=BATCHING, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, images: list[UploadedImage]) -> list[float]:
        return self.score([image.data for image in images])

    @bentoml.api
    def advise(self, image: UploadedImage) -> Assessment:
        return self.assess(image.data)

    @bentoml.api
    def info(self) -> dict[str, Any]:
        return self._served.info

    def score(self, images: list[bytes]) -> list[float]:
        """Scores for encoded images, in order, all by the same model (even during a swap)."""
        return self._served.score(images).tolist()

    def assess(self, image: bytes) -> Assessment:
        """Score one photo and explain how to improve it (used by /advise and the page)."""
        score = self.score([image])[0]
        advice = [AdviceItem(**a.to_dict()) for a in advise_photo(image, score)]
        return Assessment(score=score, advice=advice)


def _check_device(served: Served) -> None:
    """On the GPU build, a model whose ONNX Runtime session fell back to the CPU must not serve."""
    providers = served.providers()
    if SERVE_GPU and providers is not None and CUDA not in providers:
        raise ProviderError(
            f"the GPU build loaded {served.info['tag']} on {providers}, without {CUDA}"
        )


# Outermost first: bound the body, then check the API's multipart shape.
PawpularityService.add_asgi_middleware(BodySizeLimit, max_bytes=MAX_REQUEST_BYTES)
PawpularityService.add_asgi_middleware(
    MultipartGuard, fields={"/predict": "images", "/advise": "image"}
)
