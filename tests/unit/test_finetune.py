"""Fine-tuning on a few tiny images: it learns, and exports a model consistent with serving."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pawpaw.data.labeled import LabeledImages
from pawpaw.model.embed import Embedder
from pawpaw.model.finetune import FinetuneConfig, FinetuneResult, finetune
from pawpaw.schema import FLAGS, ID, TARGET

pytestmark = pytest.mark.unit


def _dataset(n: int, seed: int, source: str) -> tuple[LabeledImages, dict[str, bytes]]:
    """Brightness drives the score: a signal even a few steps can pick up."""
    rng = np.random.default_rng(seed)
    images, rows = {}, []
    for i in range(n):
        score = int(rng.integers(1, 101))
        level = 40 + 1.7 * score
        pixels = np.clip(rng.normal(level, 25, (48, 64, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG")
        image_id = f"{seed:02d}{i:030d}"
        images[image_id] = buf.getvalue()
        rows.append({ID: image_id, **{f: 0 for f in FLAGS}, TARGET: score})
    data = LabeledImages(frame=pd.DataFrame(rows), load=images.__getitem__, source=source)
    return data, images


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[FinetuneResult, LabeledImages]:
    train, _ = _dataset(24, 1, "train")
    val, _ = _dataset(8, 2, "val")
    cfg = FinetuneConfig(
        weights="package",
        input_size=64,
        epochs=3,
        batch_size=8,
        lr=1e-3,
        head_lr=1e-2,
        patience=3,
        num_workers=0,
        augment=True,
    )
    out = tmp_path_factory.mktemp("ft")
    # One intra-op thread: on a small shared machine OpenMP's spin-waiting threads slow this
    # run down 5-10x when other processes hold the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return finetune(train, val, cfg, device="cpu", progress=True, out_dir=out), val
    finally:
        torch.set_num_threads(threads)


def test_finetune_learns_and_reports_history(run: tuple[FinetuneResult, LabeledImages]) -> None:
    result, _ = run
    losses = [h["train_loss"] for h in result.history]
    assert len(result.history) == 3
    assert losses[-1] < losses[0], losses
    assert result.val_rmse == min(h["val_rmse"] for h in result.history)
    assert result.history[result.best_epoch - 1]["val_rmse"] == result.val_rmse
    assert result.images_per_s > 0 and all(h["images_per_s"] > 0 for h in result.history)
    assert result.target_transform == "sigmoid*100"


def test_exported_features_and_head_reproduce_val_rmse(
    run: tuple[FinetuneResult, LabeledImages],
) -> None:
    result, val = run
    embedder = Embedder(result.onnx_path)  # the serving path: ONNX features + numpy head
    assert embedder.backbone_id == result.backbone_id
    assert embedder.preprocess_config == result.preprocess_config
    assert result.head_weights.shape == (embedder.dim,) and result.head_weights.dtype == np.float32
    scores = result.predict(embedder.embed(val))
    assert scores.min() >= 1 and scores.max() <= 100
    rmse = float(np.sqrt(np.mean((scores - val.frame[TARGET].to_numpy()) ** 2)))
    assert rmse == pytest.approx(result.val_rmse, abs=1e-2)
    meta = json.loads(Path(result.onnx_path).with_suffix(".json").read_text())
    assert meta["finetune"]["input_size"] == 64


def test_predict_scores_contract() -> None:
    features = np.array([[0.0, 0.0], [100.0, 0.0], [-100.0, 0.0]])
    result = FinetuneResult(  # only the head's fields matter here
        onnx_path=Path("unused.onnx"), preprocess_config=None, head_weights=np.array([1.0, 5.0]),
        head_bias=0.0, backbone_id="b", val_rmse=0.0, best_epoch=1, images_per_s=0.0,
    )  # fmt: skip
    got = result.predict(features)
    np.testing.assert_allclose(got, [50.0, 100.0, 1.0])


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    train, images = _dataset(4, 3, "lakefs://r/c/train")
    val, _ = _dataset(2, 4, "val")
    bad = train.frame.copy()
    bad.loc[2, TARGET] = 250
    # one DataLoader worker process: its error must still name the image
    cfg = FinetuneConfig(weights="none", input_size=32, epochs=1, batch_size=2, num_workers=1)
    with pytest.raises(ValueError, match=r"train lakefs://r/c/train row 2 \(Id=03.*250"):
        finetune(
            LabeledImages(bad, train.load, source=train.source),
            val,
            cfg,
            progress=False,
            out_dir=tmp_path,
        )
    broken = {**images, train.frame[ID][1]: b"garbage"}
    with pytest.raises(ValueError, match=rf"image Id={train.frame[ID][1]} in lakefs://r/c/train"):
        finetune(
            LabeledImages(train.frame, broken.__getitem__, source=train.source),
            val,
            cfg,
            progress=False,
            out_dir=tmp_path,
        )
    assert not list(tmp_path.iterdir())  # nothing exported
    with pytest.raises(ValueError, match="epochs"):
        FinetuneConfig(epochs=0)
