"""The fast predictor: the same scores as the plain sequential path, bit for bit, whatever the
chunking and threading; bad images named by their row; safe for concurrent callers; and a GPU
deployment that refuses to run without ONNX Runtime's CUDA provider."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pawpaw.model.heads import FittedHead
from pawpaw.model.predictor import (
    CUDA,
    LANES_ENV,
    PredictionError,
    Predictor,
    ProviderError,
    default_lanes,
    execution_providers,
)
from pawpaw.model.preprocess import PreprocessConfig, preprocess

pytestmark = pytest.mark.unit

CFG = PreprocessConfig(
    input_size=(3, 32, 32),
    interpolation="bicubic",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    crop_pct=0.875,
)


def _conv_onnx(path: Path) -> Path:
    """A small real CNN (conv -> relu -> conv -> global pool): [N, 3, 32, 32] -> [N, 16].

    Convolutions are where batch size and thread count could change the arithmetic."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.2, (16, 8, 3, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["images", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"]),
    ]
    graph = helper.make_graph(
        nodes,
        "small-cnn",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 16])],
        initializer=[w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


HEAD = FittedHead.linear(np.linspace(-3.0, 3.0, 16), 40.0)


def _photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(30, 90)), int(rng.integers(30, 90))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


PHOTOS = [_photo(i) for i in range(23)]


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _conv_onnx(tmp_path_factory.mktemp("predictor") / "cnn.onnx")


def _sequential(onnx_path: Path, images: list[bytes]) -> np.ndarray:
    """The plain path (the pyfunc before the predictor): one default session, batches of 32,
    decode then infer, one after the other."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = [
        HEAD.predict(session.run(None, {"images": preprocess(images[s : s + 32], CFG)})[0])
        for s in range(0, len(images), 32)
    ]
    return np.concatenate(out)


@pytest.mark.parametrize(
    ("lanes", "chunk", "threads"), [(None, None, None), (1, 1, 1), (3, 4, 2), (2, 32, 0)]
)
def test_scores_equal_the_sequential_path_exactly(
    onnx_path: Path, lanes: int | None, chunk: int | None, threads: int | None
) -> None:
    predictor = Predictor(
        onnx_path,
        CFG,
        HEAD,
        providers=["CPUExecutionProvider"],
        lanes=lanes,
        chunk=chunk,
        intra_op_threads=threads,
    )
    got = predictor.predict(PHOTOS)
    assert got.dtype == np.float64 and got.shape == (len(PHOTOS),)
    np.testing.assert_array_equal(got, _sequential(onnx_path, PHOTOS))
    assert np.ptp(got) > 0  # the images really differ


def test_concurrent_callers_get_their_own_scores(onnx_path: Path) -> None:
    predictor = Predictor(onnx_path, CFG, HEAD, providers=["CPUExecutionProvider"], lanes=2)
    expected = _sequential(onnx_path, PHOTOS)
    results: dict[int, np.ndarray] = {}

    def call(k: int) -> None:
        order = [(k + j) % len(PHOTOS) for j in range(1 + k % 5)]
        results[k] = (predictor.predict([PHOTOS[i] for i in order]), expected[order])

    threads = [threading.Thread(target=call, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12
    for got, want in results.values():
        np.testing.assert_array_equal(got, want)


def test_a_bad_image_is_named_by_its_row(onnx_path: Path) -> None:
    predictor = Predictor(onnx_path, CFG, HEAD, providers=["CPUExecutionProvider"], chunk=2)
    images = [*PHOTOS[:5], b"not an image", *PHOTOS[5:8]]
    with pytest.raises(PredictionError, match=r"image #5 cannot be decoded"):
        predictor.predict(images)
    assert predictor.predict([]).shape == (0,)


def test_gpu_deployment_refuses_a_runtime_without_cuda() -> None:
    with pytest.raises(ProviderError, match=r"CUDAExecutionProvider.*\['CPUExecutionProvider'\]"):
        execution_providers(require_cuda=True, available=["CPUExecutionProvider"])
    assert execution_providers(available=["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert execution_providers(require_cuda=True, available=["CPUExecutionProvider", CUDA]) == [
        CUDA,
        "CPUExecutionProvider",
    ]


def test_this_cpu_runtime_is_refused_for_the_gpu_build() -> None:
    import onnxruntime as ort

    if CUDA in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    with pytest.raises(ProviderError, match="offers only"):
        execution_providers(require_cuda=True)


def test_lanes_default_to_one_per_core_unless_the_server_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    monkeypatch.delenv(LANES_ENV, raising=False)
    assert default_lanes() == len(os.sched_getaffinity(0))
    monkeypatch.setenv(LANES_ENV, "1")  # what the CPU service sets in each worker process
    assert default_lanes() == 1
    monkeypatch.setenv(LANES_ENV, "zero")
    with pytest.raises(ValueError, match="PAWPAW_PREDICT_LANES must be a positive integer"):
        default_lanes()


def test_the_services_copies_of_shared_names_match_their_homes() -> None:
    """bentos/champion.py runs inside the bento without the library's registry/tracking
    modules, so it restates three names; they must stay equal to their homes."""
    import subprocess
    import sys

    from pawpaw.model.pyfunc import IMAGE_COLUMN
    from pawpaw.registry import CHAMPION
    from pawpaw.tracking import COMMIT_TAG

    code = (
        "import json, sys; sys.path.insert(0, 'bentos'); import champion; "
        "print(json.dumps([champion.ALIAS, champion.COMMIT_TAG, champion.IMAGE_COLUMN]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert (
        out.stdout.strip().splitlines()[-1] == f'["{CHAMPION}", "{COMMIT_TAG}", "{IMAGE_COLUMN}"]'
    )
