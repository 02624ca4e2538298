"""Scoring photos at the machine's speed: one predictor for serving, evaluation and drift.

A :class:`Predictor` holds the backbone's ONNX Runtime session, its preprocess config and the
head. :meth:`Predictor.predict` splits the images into small chunks and hands them to a few
*lanes* (threads): each lane decodes + preprocesses its chunk (numpy + PIL, which release the
GIL) and runs it through ONNX Runtime, so one lane's decoding overlaps another's inference.
Concurrent callers (the service's request threads) share the same lanes, so the machine never
runs more inferences at once than it has lanes.

Chosen by measurement on 2 CPU cores (tf_efficientnet_lite0, 224 px; the numbers are in the
README, "Serving" and "Benchmarks"): one-thread ONNX Runtime runs in parallel beat one run with
every thread at any batch size, and bigger batches are *slower* per image on this CPU. So on
CPU a lane runs one-thread inference on chunks of
:data:`CPU_CHUNK` images, one lane per core. Features are bitwise identical whatever the chunk
size or thread count (checked: tests/unit/test_predictor.py), so scores equal the plain
sequential path. On CUDA the GPU does the arithmetic: chunks of :data:`GPU_CHUNK`, lanes only
keep decoding ahead of it.

This module must stay importable without torch: the MLflow model ships it as serving code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pawpaw.model.heads import FittedHead
from pawpaw.model.preprocess import ImageInput, PreprocessConfig, preprocess

__all__ = [
    "CPU_CHUNK",
    "CUDA",
    "GPU_CHUNK",
    "PredictionError",
    "Predictor",
    "ProviderError",
    "default_lanes",
    "execution_providers",
    "ort_session",
]

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
CPU_CHUNK = 4  # images per ONNX Runtime call on CPU: per-image speed is flat from 1 to 4
GPU_CHUNK = 32  # on CUDA, bigger batches use the device better
LANES_ENV = "PAWPAW_PREDICT_LANES"


class PredictionError(ValueError):
    """Input the model cannot score; the message names the offending row."""


class ProviderError(RuntimeError):
    """ONNX Runtime does not offer the execution provider the deployment requires."""


def execution_providers(
    *, require_cuda: bool = False, available: Sequence[str] | None = None
) -> list[str]:
    """ONNX Runtime providers to use, CUDA first when this ONNX Runtime has it.

    ``require_cuda``: raise :class:`ProviderError` (naming what is offered) instead of silently
    falling back to the CPU, as a GPU deployment must.
    """
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    if require_cuda and CUDA not in available:
        raise ProviderError(
            f"the GPU build needs ONNX Runtime's {CUDA}, but this ONNX Runtime offers only "
            f"{list(available)} (is onnxruntime-gpu installed instead of onnxruntime, and are "
            "the CUDA/cuDNN libraries and an NVIDIA driver present?)"
        )
    return [p for p in (CUDA, CPU) if p in available]


def ort_session(
    onnx_path: str | Path,
    *,
    intra_op_threads: int,
    providers: Sequence[str],
    inter_op_threads: int | None = None,
) -> Any:
    """An ONNX Runtime session set up as every decode-overlapping caller wants it: full graph
    optimisation, and idle ORT threads that sleep instead of spinning (spinning threads steal
    the cores that decode the next images; measured +30 % img/s on 2 shared cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = intra_op_threads
    if inter_op_threads is not None:
        opts.inter_op_num_threads = inter_op_threads
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=list(providers))


def default_lanes() -> int:
    """``PAWPAW_PREDICT_LANES`` if set, else one lane per usable core (CPU affinity)."""
    raw = os.environ.get(LANES_ENV, "").strip()
    if not raw:
        return max(1, len(os.sched_getaffinity(0)))
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{LANES_ENV} must be a positive integer, got {raw!r}")
    return int(raw)


class Predictor:
    """Encoded photos (or uint8 arrays / PIL images) in, Pawpularity (float64, 1..100) out.

    Thread-safe: any number of threads may call :meth:`predict` at once.
    """

    def __init__(
        self,
        onnx_path: str | Path,
        cfg: PreprocessConfig,
        head: FittedHead,
        *,
        providers: Sequence[str] | None = None,
        lanes: int | None = None,
        chunk: int | None = None,
        intra_op_threads: int | None = None,
    ) -> None:
        """``lanes``: parallel decode+inference threads (default: ``PAWPAW_PREDICT_LANES``, else
        one per core; a server running one process per core sets it to 1); ``chunk``:
        images per inference call; ``intra_op_threads``: ONNX Runtime threads per call (CPU
        default 1: parallelism comes from the lanes). Defaults: see the module docstring."""

        self.cfg = cfg
        self.head = head
        providers = list(providers) if providers is not None else execution_providers()
        on_gpu = CUDA in providers
        self.lanes = lanes or default_lanes()
        self.chunk = chunk or (GPU_CHUNK if on_gpu else CPU_CHUNK)
        threads = intra_op_threads if intra_op_threads is not None else (0 if on_gpu else 1)
        self.session = ort_session(
            onnx_path, intra_op_threads=threads, providers=providers, inter_op_threads=1
        )
        self.input_name = self.session.get_inputs()[0].name
        self._lanes = ThreadPoolExecutor(max_workers=self.lanes, thread_name_prefix="pawpaw-lane")

    @property
    def providers(self) -> list[str]:
        """The providers the session really uses (ONNX Runtime may have dropped CUDA)."""
        return list(self.session.get_providers())

    def features(self, x: np.ndarray) -> np.ndarray:
        """Backbone features of a preprocessed float32 batch: [N, 3, H, W] -> [N, D]."""
        return self.session.run(None, {self.input_name: x})[0]

    def predict(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Scores of ``images`` in order, float64 [N]; a bad image raises
        :class:`PredictionError` naming its row (``image #i``)."""
        images = list(images)
        out = np.empty(len(images), dtype=np.float64)
        starts = range(0, len(images), self.chunk)
        futures = [
            self._lanes.submit(self._score_chunk, images[s : s + self.chunk], s) for s in starts
        ]
        try:
            for start, future in zip(starts, futures, strict=True):
                scores = future.result()
                out[start : start + len(scores)] = scores
        finally:
            for future in futures:  # after a failure, chunks not started yet are dropped
                future.cancel()
        return out

    def _score_chunk(self, images: Sequence[ImageInput], offset: int) -> np.ndarray:
        try:
            x = preprocess(images, self.cfg)  # [n, 3, H, W] float32
        except ValueError as exc:
            raise PredictionError(_shift_index(str(exc), offset)) from exc
        return self.head.predict(self.features(x))  # [n] float64

    @classmethod
    def from_files(
        cls, onnx_path: str | Path, preprocess_json: str | Path, head_npz: str | Path, **kwargs: Any
    ) -> Predictor:
        """A predictor of the model's artifact files (backbone, preprocess config, head)."""
        import json

        cfg = PreprocessConfig.from_dict(json.loads(Path(preprocess_json).read_text()))
        return cls(onnx_path, cfg, FittedHead.from_npz(head_npz), **kwargs)


def _shift_index(message: str, offset: int) -> str:
    """preprocess names the index within its chunk; name the row of the whole input."""
    return re.sub(r"image #(\d+)", lambda m: f"image #{int(m.group(1)) + offset}", message, count=1)
