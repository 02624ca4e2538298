"""Fine-tuning the whole network: the GPU path (it runs on CPU too, slowly).

The network is the pretrained timm backbone (classifier removed, pooled features ``[N, D]``)
followed by a one-output linear head. Loss: BCE-with-logits on ``Pawpularity / 100`` (the
Kaggle practice: a bounded target, robust to the pile-up at 100). Images go through the SAME
:func:`pawpaw.model.preprocess.preprocess_one` as serving; training adds only light augmentation
before it (horizontal flip, a mild random crop of the decoded photo).

Output contract, identical in shape to the frozen-features ("head") mode so serving has one
code path:

- ``FinetuneResult.onnx_path``: the fine-tuned backbone as ONNX, ``images [N, 3, H, W] ->
  features [N, D]``, with the same ``.json`` sidecar as every exported backbone, so
  ``pawpaw.model.embed.Embedder(onnx_path)`` embeds with it (and caches under its own backbone_id);
- ``head_weights`` ``[D]`` float32 and ``head_bias`` (a float): the fine-tuned linear layer;
- ``target_transform = "sigmoid*100"``:
  ``score = clip(sigmoid(features @ head_weights + head_bias) * 100, 1, 100)``
  (:meth:`FinetuneResult.predict`).
"""

from __future__ import annotations

import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pawpaw.data.labeled import LabeledImages
from pawpaw.model.heads import SIGMOID_X100, FittedHead
from pawpaw.model.preprocess import PreprocessConfig, decode_image, preprocess_one
from pawpaw.progress import say
from pawpaw.schema import ID, TARGET

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune"]


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyper-parameters of a fine-tuning run (all JSON-serialisable: log them as params)."""

    backbone: str = "tf_efficientnet_lite0"
    weights: str = "package"  # see pawpaw.model.backbone.create_backbone
    input_size: int | None = None  # None: the model's own (224 for lite0)
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-4  # backbone
    head_lr: float = 3e-3  # the new head learns faster than the pretrained body
    weight_decay: float = 1e-2
    warmup_fraction: float = 0.05  # of all steps, linear warm-up before the cosine decay
    patience: int = 3  # epochs without a better val RMSE before stopping
    # DataLoader processes; None: min(8, cores) on CUDA, 0 on CPU (where workers only steal
    # cores from the forward/backward pass: measured 4x slower with 1 worker on 2 cores).
    num_workers: int | None = None
    augment: bool = True
    amp: bool = True  # on CUDA only: bf16 where supported, else fp16 with loss scaling
    channels_last: bool = True  # CUDA only: oneDNN's channels_last backward is slow on CPU
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be >= 1")
        if self.lr <= 0 or self.head_lr <= 0 or not 0 <= self.warmup_fraction < 1:
            raise ValueError("lr and head_lr must be > 0 and warmup_fraction in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FinetuneResult:
    """The best epoch's network as ONNX features + a numpy head (see the module docstring)."""

    onnx_path: Path
    preprocess_config: PreprocessConfig
    head_weights: np.ndarray  # [D] float32
    head_bias: float
    backbone_id: str
    val_rmse: float
    best_epoch: int  # 1-based
    images_per_s: float  # training throughput (mean over epochs)
    history: list[dict[str, float]] = field(default_factory=list)
    target_transform: str = SIGMOID_X100

    def head(self) -> FittedHead:
        """The trained linear head as the served model runs it (sigmoid x 100, clipped)."""
        return FittedHead.linear(self.head_weights, self.head_bias, transform=self.target_transform)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Scores 1..100 from pooled features ``[N, D]``."""
        return self.head().predict(features)


def finetune(
    train: LabeledImages,
    val: LabeledImages,
    cfg: FinetuneConfig,
    *,
    device: str | None = None,
    progress: bool = True,
    out_dir: Path | None = None,
) -> FinetuneResult:
    """Fine-tune ``cfg.backbone`` + a linear head on ``train``; early-stop on ``val`` RMSE.

    The best epoch's network is exported to ``out_dir/<backbone_id>.onnx`` (default:
    ``settings.data_dir / "backbones"``, beside the frozen backbones).
    """
    from pawpaw.model.backbone import create_backbone, weights_id
    from pawpaw.model.embed import backbone_id_for, export_onnx

    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"finetune needs train and val rows (got {len(train)} and {len(val)})")
    for name, data in (("train", train), ("val", val)):
        _check_targets(data, name)
    if out_dir is None:
        from pawpaw.config import get_settings

        out_dir = get_settings().data_dir / "backbones"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    _seed_everything(cfg.seed)

    body = create_backbone(cfg.backbone, weights=cfg.weights)
    pp = PreprocessConfig.from_model(body, input_size=cfg.input_size)
    body.reset_classifier(0)
    net = _Regressor(body, _mean_logit(train)).to(device)
    on_cuda = device.startswith("cuda")
    memory_format = (
        torch.channels_last if cfg.channels_last and on_cuda else torch.contiguous_format
    )
    net = net.to(memory_format=memory_format)

    train_loader = _loader(train, pp, cfg, shuffle=True, device=device)
    val_loader = _loader(val, pp, cfg, shuffle=False, device=device)
    optimizer = torch.optim.AdamW(
        [
            {"params": net.body.parameters(), "lr": cfg.lr},
            {"params": net.head.parameters(), "lr": cfg.head_lr},
        ],
        weight_decay=cfg.weight_decay,
    )
    total_steps = cfg.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_cosine(total_steps, int(cfg.warmup_fraction * total_steps))
    )
    amp_dtype = _amp_dtype(device, cfg.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    if progress:
        say(
            True,
            f"fine-tuning {cfg.backbone} ({cfg.weights}) on {len(train)} images, val {len(val)}, "
            f"{device}, amp={amp_dtype}, input {pp.input_size[1]}x{pp.input_size[2]}",
        )

    history: list[dict[str, float]] = []
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        started, seen, loss_sum = time.monotonic(), 0, 0.0
        for x, y in train_loader:
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            with _autocast(device, amp_dtype):
                logits = net(x)
            loss = loss_fn(logits.float(), y / 100.0)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            seen += len(y)
            loss_sum += float(loss.detach()) * len(y)
        if on_cuda:
            torch.cuda.synchronize()
        train_s = time.monotonic() - started
        val_rmse = _evaluate(net, val_loader, device, memory_format)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / seen,
            "val_rmse": val_rmse,
            "images_per_s": seen / max(train_s, 1e-9),
            "lr": optimizer.param_groups[0]["lr"],
        }
        history.append(row)
        improved = best is None or val_rmse < best[0]
        if improved:
            state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
            best = (val_rmse, epoch, state)
        if progress:
            say(
                True,
                f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.4f}, "
                f"val RMSE {val_rmse:.3f}{' *' if improved else ''}, "
                f"{row['images_per_s']:.1f} img/s ({train_s:.1f} s)",
            )
        if epoch - best[1] >= cfg.patience:
            if progress:
                say(True, f"early stop: no better val RMSE for {cfg.patience} epochs")
            break

    assert best is not None
    best_rmse, best_epoch, best_state = best
    net.load_state_dict(best_state)
    net = net.to("cpu", memory_format=torch.contiguous_format).float().eval()
    backbone_id = backbone_id_for(cfg.backbone, weights_id(net.body), pp)
    onnx_path = Path(out_dir) / f"{backbone_id}.onnx"
    meta = {"backbone_id": backbone_id, "model": cfg.backbone, "finetune": cfg.to_dict()}
    export_onnx(net.body, pp, onnx_path, metadata=meta)
    if progress:
        say(True, f"best epoch {best_epoch}: val RMSE {best_rmse:.3f}; exported {onnx_path}")
    return FinetuneResult(
        onnx_path=onnx_path,
        preprocess_config=pp,
        head_weights=net.head.weight.detach().numpy()[0].astype(np.float32),
        head_bias=float(net.head.bias.detach()[0]),
        backbone_id=backbone_id,
        val_rmse=best_rmse,
        best_epoch=best_epoch,
        images_per_s=float(np.mean([h["images_per_s"] for h in history])),
        history=history,
    )


# --- the network ------------------------------------------------------------------------------
class _Regressor(torch.nn.Module):
    """images [N, 3, H, W] -> body -> pooled features [N, D] -> head -> one logit [N]."""

    def __init__(self, body: torch.nn.Module, initial_logit: float) -> None:
        super().__init__()
        self.body = body
        self.head = torch.nn.Linear(body.num_features, 1)
        with torch.no_grad():
            self.head.weight.mul_(0.1)  # start near the mean predictor, not at random scores
            self.head.bias.fill_(initial_logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(1)


def _check_targets(data: LabeledImages, name: str) -> None:
    target = data.frame[TARGET].astype(float)
    bad = ~np.isfinite(target) | (target < 0) | (target > 100)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        where = f"{name} {data.source}" if data.source else name
        raise ValueError(
            f"{where} row {row} (Id={data.frame[ID].iloc[row]}): "
            f"{TARGET}={target.iloc[row]} is not in 0..100"
        )


def _mean_logit(data: LabeledImages) -> float:
    p = float(np.clip(data.frame[TARGET].astype(float).mean() / 100.0, 0.01, 0.99))
    return math.log(p / (1 - p))


def _evaluate(
    net: torch.nn.Module, loader: Any, device: str, memory_format: torch.memory_format
) -> float:
    """Val RMSE in float32 (no autocast): the number the exported fp32 ONNX model reproduces."""
    net.eval()
    sq, n = 0.0, 0
    with torch.inference_mode():
        for x, y in loader:
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            logits = net(x)
            pred = (torch.sigmoid(logits.float()) * 100).clamp(1, 100).cpu().double()
            sq += float(((pred - y.double()) ** 2).sum())
            n += len(y)
    return math.sqrt(sq / n)


def _amp_dtype(device: str, enabled: bool) -> Any:
    if not enabled or not device.startswith("cuda"):
        return None  # CPU autocast (bf16) is slower than fp32 on most CPUs and hurts accuracy
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _autocast(device: str, dtype: Any) -> Any:
    return torch.autocast("cuda", dtype=dtype) if dtype is not None else nullcontext()


def _warmup_cosine(total: int, warmup: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


# --- data -------------------------------------------------------------------------------------
class _Images(torch.utils.data.Dataset):
    """(preprocessed CHW float32, target) per row of ``data``; DataLoader workers need
    ``data.load`` to survive a fork (true for closures) or pickling (spawn)."""

    def __init__(self, data: LabeledImages, pp: PreprocessConfig, augment: bool) -> None:
        self.ids = [str(v) for v in data.frame[ID].tolist()]
        self.targets = data.frame[TARGET].astype(np.float32).to_numpy()
        self.load = data.load
        self.source = data.source
        self.pp = pp
        self.augment = augment

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.float32]:
        image_id = self.ids[i]
        try:
            img = decode_image(self.load(image_id))
            if self.augment:
                img = _augment(img)  # `random` is seeded per worker (_seed_worker)
            x = preprocess_one(img, self.pp)
        except Exception as exc:
            where = f" in {self.source}" if self.source else ""
            raise ValueError(f"image Id={image_id}{where} cannot be used: {exc}") from exc
        return x, self.targets[i]


def _augment(img: Image.Image) -> Image.Image:
    """Light, label-preserving changes on the decoded photo, before the shared preprocessing:
    a horizontal flip half the time and a random crop keeping 70-100% of the area."""
    if random.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    area = random.uniform(0.7, 1.0)
    aspect = math.exp(random.uniform(math.log(3 / 4), math.log(4 / 3)))
    w = min(img.width, round(img.width * math.sqrt(area * aspect)))
    h = min(img.height, round(img.height * math.sqrt(area / aspect)))
    left, top = random.randint(0, img.width - w), random.randint(0, img.height - h)
    return img.crop((left, top, left + w, top + h))


def _loader(
    data: LabeledImages, pp: PreprocessConfig, cfg: FinetuneConfig, *, shuffle: bool, device: str
) -> Any:
    on_cuda = device.startswith("cuda")
    workers = cfg.num_workers
    if workers is None:
        workers = min(8, os.cpu_count() or 1) if on_cuda else 0
    generator = torch.Generator().manual_seed(cfg.seed)
    return torch.utils.data.DataLoader(
        _Images(data, pp, augment=cfg.augment and shuffle),
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        # A last batch of one breaks BatchNorm in training; drop it only when there is more.
        drop_last=shuffle and len(data) % cfg.batch_size == 1 and len(data) > cfg.batch_size,
        num_workers=workers,
        pin_memory=on_cuda,
        persistent_workers=workers > 0,
        generator=generator,
        worker_init_fn=_seed_worker,
    )


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # distinct per worker and epoch, derived from cfg.seed
    random.seed(seed)
    np.random.seed(seed)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
