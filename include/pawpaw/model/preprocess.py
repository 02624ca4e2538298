"""Image preprocessing shared by embedding, fine-tuning and serving, in numpy + PIL only.

:class:`PreprocessConfig` is the model's own timm data config (``resolve_data_config``), so
training and serving cannot disagree about size, crop or normalisation. :func:`preprocess`
reproduces timm's eval transform (``timm.data.create_transform(**data_config)``) exactly — same
PIL resize, same crop arithmetic, same float32 normalisation — without importing torch, so a
serving container needs neither torch nor torchvision.

Decoding: EXIF orientation is applied (phones store portraits as rotated landscapes) and every
mode (grayscale, palette, RGBA, CMYK, 16-bit) is converted to RGB, as timm's own loaders do
with ``.convert("RGB")``.

``draft=True`` lets PIL decode a large JPEG at 1/2, 1/4 or 1/8 scale in the DCT (much cheaper),
never below the resize target (e.g. 256 px for a 224 px crop), so only photos at least twice
that size change. It approximates the exact path (the DCT downscale replaces part of the bicubic
one; pixel values differ slightly), so it is off by default: training and serving must agree.

This module must stay self-contained (numpy + PIL, no other pawpaw import): the MLflow model
ships it as the serving code.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps

__all__ = ["ImageInput", "PreprocessConfig", "decode_image", "preprocess", "preprocess_one"]

ImageInput = bytes | np.ndarray | Image.Image

_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
_CROP_MODES = ("center", "squash", "border")


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes a model input: timm's data config, frozen and JSON-serialisable."""

    input_size: tuple[int, int, int]  # (C, H, W)
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_pct: float
    crop_mode: str = "center"

    def __post_init__(self) -> None:
        # Normalise lists (from JSON) to tuples so equality and hashing behave.
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "crop_pct", float(self.crop_pct))
        if len(self.input_size) != 3 or self.input_size[0] != 3 or min(self.input_size) < 1:
            raise ValueError(f"input_size must be (3, H, W), got {self.input_size}")
        if self.interpolation not in _INTERPOLATION:
            raise ValueError(
                f"interpolation must be one of {sorted(_INTERPOLATION)}, got {self.interpolation!r}"
            )
        if self.crop_mode not in _CROP_MODES:
            raise ValueError(f"crop_mode must be one of {_CROP_MODES}, got {self.crop_mode!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean/std must be 3 values (std > 0), got {self.mean}/{self.std}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")

    @classmethod
    def from_model(
        cls, model: Any, *, input_size: int | tuple[int, int] | None = None
    ) -> PreprocessConfig:
        """The config timm resolves for ``model``; ``input_size`` overrides the square/HxW size."""
        from timm.data import resolve_data_config

        data = resolve_data_config({}, model=model)
        if input_size is not None:
            h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
            data["input_size"] = (3, int(h), int(w))
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessConfig:
        return cls(
            input_size=tuple(data["input_size"]),
            interpolation=str(data["interpolation"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            crop_pct=float(data["crop_pct"]),
            crop_mode=str(data.get("crop_mode") or "center"),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; also valid keyword arguments for ``timm.data.create_transform``."""
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @property
    def size_hw(self) -> tuple[int, int]:
        return self.input_size[1], self.input_size[2]


def decode_image(image: ImageInput, *, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Any accepted input as an upright RGB PIL image.

    ``bytes`` are decoded (EXIF orientation applied); an ``ndarray`` is HxW (gray) or HxWxC
    uint8 (C = 3 RGB or 4 RGBA); a PIL image is converted. ``draft_size`` (w, h): see module doc.
    """
    if isinstance(image, bytes | bytearray | memoryview):
        img = Image.open(io.BytesIO(bytes(image)))
        if draft_size is not None and img.format == "JPEG":
            img.draft("RGB", draft_size)
        img.load()  # decode now, so a truncated file fails here with its index
        ImageOps.exif_transpose(img, in_place=True)  # in place: no copy of upright photos
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(
                f"array images must be uint8 HxW or HxWxC, got {image.dtype} {image.shape}"
            )
        img = Image.fromarray(image)
    elif isinstance(image, Image.Image):
        img = image
    else:
        raise TypeError(f"expected bytes, ndarray or PIL image, got {type(image).__name__}")
    if img.mode != "RGB":
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16-bit/int grayscale: PIL's convert("RGB") clips at 255; scale to 8 bits first.
            arr = np.asarray(img, dtype=np.float64)
            img = Image.fromarray(np.clip(arr / 256.0, 0, 255).astype(np.uint8), mode="L")
        img = img.convert("RGB")
    return img


def preprocess_one(image: ImageInput, cfg: PreprocessConfig, *, draft: bool = False) -> np.ndarray:
    """One image as a float32 CHW array, equal to timm's eval transform of the same RGB image."""
    target_h, target_w = cfg.size_hw
    scale_h, scale_w = (math.floor(x / cfg.crop_pct) for x in (target_h, target_w))
    draft_size = (scale_w, scale_h) if draft else None
    img = decode_image(image, draft_size=draft_size)
    resample = _INTERPOLATION[cfg.interpolation]
    fill: tuple[int, ...] = (0, 0, 0)

    if cfg.crop_mode == "squash":
        img = _resize(img, (scale_h, scale_w), resample)
    elif cfg.crop_mode == "border":
        img = _resize(img, _keep_ratio_size(img, (scale_h, scale_w), longest=1.0), resample)
        fill = tuple(round(255 * v) for v in cfg.mean)
    elif scale_h == scale_w:
        # torchvision Resize(int): shorter edge -> size, longer edge truncated (int()).
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = scale_h, int(scale_h * long / short)
        img = _resize(img, (new_long, new_short) if w <= h else (new_short, new_long), resample)
    else:
        img = _resize(img, _keep_ratio_size(img, (scale_h, scale_w), longest=0.0), resample)

    arr = _center_crop_or_pad(np.asarray(img), (target_h, target_w), fill)
    # Same float32 ops as ToTensor + Normalize: x / 255, then (x - mean) / std.
    x = arr.astype(np.float32) / np.float32(255.0)
    x = (x - np.asarray(cfg.mean, dtype=np.float32)) / np.asarray(cfg.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def preprocess(
    images: Sequence[ImageInput], cfg: PreprocessConfig, *, draft: bool = False
) -> np.ndarray:
    """A batch as float32 NCHW. An undecodable image raises ``ValueError`` naming its index."""
    out = np.empty((len(images), *cfg.input_size), dtype=np.float32)
    for i, image in enumerate(images):
        try:
            out[i] = preprocess_one(image, cfg, draft=draft)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ValueError(f"image #{i} cannot be decoded: {exc}") from exc
    return out


def _resize(img: Image.Image, size_hw: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    # torchvision returns the image untouched when it already has the size; so do we.
    if (img.height, img.width) == tuple(size_hw):
        return img
    return img.resize((size_hw[1], size_hw[0]), resample)


def _keep_ratio_size(
    img: Image.Image, target_hw: tuple[int, int], longest: float
) -> tuple[int, int]:
    # timm ResizeKeepRatio.get_params without the random parts.
    ratio_h, ratio_w = img.height / target_hw[0], img.width / target_hw[1]
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return round(img.height / ratio), round(img.width / ratio)


def _center_crop_or_pad(
    arr: np.ndarray, size_hw: tuple[int, int], fill: tuple[int, ...]
) -> np.ndarray:
    """torchvision CenterCrop / timm CenterCropOrPad on HxWx3 (Python round, as they do)."""
    crop_h, crop_w = size_hw
    h, w = arr.shape[:2]
    if crop_h > h or crop_w > w:
        top, left = max(crop_h - h, 0) // 2, max(crop_w - w, 0) // 2
        bottom, right = (max(crop_h - h, 0) + 1) // 2, (max(crop_w - w, 0) + 1) // 2
        padded = np.empty((h + top + bottom, w + left + right, 3), dtype=arr.dtype)
        padded[:] = np.asarray(fill, dtype=arr.dtype)
        padded[top : top + h, left : left + w] = arr
        arr = padded
        h, w = arr.shape[:2]
    top = round((h - crop_h) / 2.0)
    left = round((w - crop_w) / 2.0)
    return arr[top : top + crop_h, left : left + crop_w]
