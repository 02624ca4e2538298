"""ONNX embeddings: equal to PyTorch features, exported once, cached per content key."""

from __future__ import annotations

import io
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pawpaw.config import Settings
from pawpaw.data.labeled import LabeledImages
from pawpaw.model.backbone import create_backbone
from pawpaw.model.embed import Embedder, EmbeddingCache, export_onnx
from pawpaw.model.preprocess import PreprocessConfig, preprocess
from pawpaw.schema import FLAGS, ID, TARGET

pytestmark = pytest.mark.unit

SIZE = 64  # small input keeps export and inference fast; the graph is the real lite0


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(70, 130, size=2)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


class _Source:
    """A LabeledImages factory whose loader counts reads."""

    def __init__(self, images: dict[str, bytes]) -> None:
        self.images = images
        self.reads: Counter[str] = Counter()

    def load(self, image_id: str) -> bytes:
        self.reads[image_id] += 1
        return self.images[image_id]

    def data(self, ids: list[str], *, keyed: bool) -> LabeledImages:
        frame = pd.DataFrame({ID: ids, **{f: 0 for f in FLAGS}, TARGET: 50})
        keys = {i: f"md5-{i}" for i in ids} if keyed else {}
        return LabeledImages(frame=frame, load=self.load, content_keys=keys, source="test://s")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return create_backbone(weights="none")


@pytest.fixture(scope="module")
def embedder(model: torch.nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"), backbone_weights="none", embed_batch_size=4
    )
    return Embedder.from_settings(settings, input_size=SIZE)


def test_onnx_features_match_torch(embedder: Embedder, model: torch.nn.Module) -> None:
    images = [_jpeg(i) for i in range(6)]
    got = embedder.embed_bytes(images)
    features = create_backbone(weights="none")
    features.reset_classifier(0)
    with torch.inference_mode():
        x = torch.from_numpy(preprocess(images, embedder.preprocess_config))
        expected = features(x).numpy()
    assert got.shape == (6, 1280) == (6, embedder.dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    # batching never changes results
    np.testing.assert_allclose(embedder.embed_bytes(images, batch_size=1), got, atol=1e-5)
    assert model.num_classes == 1000  # export worked on a copy, the caller's model is intact


def test_export_is_reused_and_self_describing(embedder: Embedder, model: torch.nn.Module) -> None:
    path = embedder.onnx_path
    assert path.name == f"{embedder.backbone_id}.onnx"
    assert embedder.backbone_id.startswith("tf_efficientnet_lite0-")
    assert embedder.preprocess_config.input_size == (3, SIZE, SIZE)
    mtime = path.stat().st_mtime_ns
    again = Embedder.from_model(model, "tf_efficientnet_lite0", path.parent, input_size=SIZE)
    assert again.onnx_path == path and path.stat().st_mtime_ns == mtime
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers
    # loadable from the file alone (serving), and picklable (sessions are rebuilt lazily)
    loaded = Embedder(path)
    assert (loaded.backbone_id, loaded.dim) == (embedder.backbone_id, embedder.dim)
    assert loaded.preprocess_config == embedder.preprocess_config
    img = [_jpeg(99)]
    clone = pickle.loads(pickle.dumps(embedder))
    np.testing.assert_array_equal(clone.embed_bytes(img), embedder.embed_bytes(img))


def test_export_rejects_a_model_without_pooled_features(tmp_path: Path) -> None:
    class Spatial(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    cfg = PreprocessConfig((3, 8, 8), "bilinear", (0.5,) * 3, (0.5,) * 3, 1.0)
    with pytest.raises(RuntimeError, match="pooled features"):
        export_onnx(Spatial(), cfg, tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("keyed", [True, False], ids=["content_keys", "sha256"])
def test_cache_makes_the_second_embed_free(embedder: Embedder, tmp_path: Path, keyed: bool) -> None:
    source = _Source({f"id{i:02d}": _jpeg(i) for i in range(10)})
    data = source.data(sorted(source.images), keyed=keyed)
    cache = EmbeddingCache(tmp_path / "emb", embedder.backbone_id)

    first = embedder.embed(data, cache=cache, progress=True)
    assert set(source.reads.values()) == {1}  # each image read exactly once, even when hashing
    assert len(cache) == 10
    np.testing.assert_allclose(first, embedder.embed_bytes(list(source.images.values())), atol=1e-6)

    source.reads.clear()
    second = embedder.embed(data, cache=cache)
    np.testing.assert_array_equal(first, second)
    # keyed: nothing read at all; unkeyed: read once to hash, never decoded or embedded
    assert sum(source.reads.values()) == (0 if keyed else 10)


def test_only_new_images_are_embedded(
    embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _Source({f"id{i:02d}": _jpeg(i) for i in range(8)})
    source.images["dup"] = source.images["id00"]  # same bytes under another Id
    cache = EmbeddingCache(tmp_path / "emb", embedder.backbone_id)
    embedded: list[int] = []
    original = Embedder.embed_arrays
    monkeypatch.setattr(
        Embedder, "embed_arrays", lambda self, x: (embedded.append(len(x)), original(self, x))[1]
    )

    old = embedder.embed(source.data([f"id{i:02d}" for i in range(5)], keyed=False), cache=cache)
    assert sum(embedded) == 5
    embedded.clear()
    ids = ["id07", "id00", "dup", "id05", "id06", "id03", "id07"]
    new = embedder.embed(source.data(ids, keyed=False), cache=cache)
    assert sum(embedded) == 3  # id05, id06, id07: duplicates and cached rows cost nothing
    np.testing.assert_array_equal(new[1], old[0])
    np.testing.assert_array_equal(new[2], old[0])
    np.testing.assert_array_equal(new[5], old[3])
    np.testing.assert_array_equal(new[0], new[6])


def test_corrupt_image_names_the_id(embedder: Embedder, tmp_path: Path) -> None:
    source = _Source({"good1": _jpeg(1), "broken": b"\xff\xd8garbage", "good2": _jpeg(2)})
    data = source.data(["good1", "broken", "good2"], keyed=True)
    cache = EmbeddingCache(tmp_path / "emb", embedder.backbone_id)
    with pytest.raises(ValueError, match=r"image Id=broken in test://s cannot be embedded"):
        embedder.embed(data, cache=cache)
    assert cache.get_many(["md5-broken"]) == {}
    with pytest.raises(ValueError, match=r"image #1 cannot be embedded"):
        embedder.embed_bytes([_jpeg(1), b"nope"])


def test_cache_store_is_atomic_and_checked(embedder: Embedder, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "bb-1")
    vec = np.arange(4, dtype=np.float32)
    cache.put_many({"a/b c": vec, "sha256:00": vec * 2})
    cache.put_many({"a/b c": vec})  # rewriting is harmless
    got = cache.get_many(["a/b c", "sha256:00", "missing"])
    assert set(got) == {"a/b c", "sha256:00"}
    np.testing.assert_array_equal(got["sha256:00"], vec * 2)
    assert not list(tmp_path.rglob(".tmp-*"))
    assert EmbeddingCache(tmp_path, "bb-2").get_many(["a/b c"]) == {}  # per backbone
    with pytest.raises(ValueError, match="cache is for backbone 'bb-1'"):
        embedder.embed(_Source({}).data([], keyed=True), cache=cache)
    with pytest.raises(ValueError, match="invalid backbone_id"):
        EmbeddingCache(tmp_path, "../x")
