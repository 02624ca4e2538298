"""preprocess() equals timm's eval transform, without torch, on awkward real-world images."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageFilter, ImageOps

from pawpaw.model.preprocess import PreprocessConfig, decode_image, preprocess

pytestmark = pytest.mark.unit

LITE0 = {
    "input_size": (3, 224, 224),
    "interpolation": "bicubic",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "crop_pct": 0.875,
    "crop_mode": "center",
}


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient plus noise: resampling differences would show, unlike flat colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=-1)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _odd_images() -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90° clockwise
    rgba = np.dstack([_photo(180, 260, 3), np.full((180, 260), 128, np.uint8)])
    return {
        "landscape": _encode(Image.fromarray(_photo(300, 451)), "JPEG", quality=90),
        "portrait": _encode(Image.fromarray(_photo(517, 301, 1)), "JPEG"),
        "grayscale": _encode(Image.fromarray(_photo(256, 320, 2)[..., 0]), "JPEG"),
        "rgba_png": _encode(Image.fromarray(rgba, mode="RGBA"), "PNG"),
        "cmyk": _encode(Image.fromarray(_photo(240, 240, 4)).convert("CMYK"), "JPEG"),
        "palette_png": _encode(Image.fromarray(_photo(200, 333, 5)).convert("P"), "PNG"),
        "tiny": _encode(Image.fromarray(_photo(40, 70, 6)), "PNG"),
        "exif_rotated": _encode(Image.fromarray(_photo(200, 320, 7)), "JPEG", exif=exif),
    }


def _timm_reference(raw: bytes, cfg: PreprocessConfig) -> np.ndarray:
    from timm.data import create_transform

    img = ImageOps.exif_transpose(Image.open(io.BytesIO(raw))).convert("RGB")
    return create_transform(**cfg.to_dict()).__call__(img).numpy()


CONFIGS = {
    "lite0": PreprocessConfig(**LITE0),
    "squash_bilinear": PreprocessConfig(
        **{**LITE0, "crop_mode": "squash", "interpolation": "bilinear"}
    ),
    "border_nonsquare": PreprocessConfig(
        **{**LITE0, "crop_mode": "border", "input_size": (3, 96, 128), "crop_pct": 0.9}
    ),
    "center_nonsquare": PreprocessConfig(**{**LITE0, "input_size": (3, 128, 96), "crop_pct": 1.0}),
}


@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
def test_equals_timm_eval_transform_on_odd_images(cfg_name: str) -> None:
    cfg = CONFIGS[cfg_name]
    images = _odd_images()
    batch = preprocess(list(images.values()), cfg)
    assert batch.dtype == np.float32 and batch.shape == (len(images), *cfg.input_size)
    for (name, raw), mine in zip(images.items(), batch, strict=True):
        diff = float(np.abs(mine - _timm_reference(raw, cfg)).max())
        assert diff < 1e-5, f"{name}: max abs diff {diff}"


def test_exif_orientation_and_modes_are_normalised() -> None:
    images = _odd_images()
    upright = decode_image(images["exif_rotated"])
    assert upright.size == (200, 320)  # (w, h): the 320x200 stored landscape, turned upright
    for name in ("grayscale", "rgba_png", "cmyk", "palette_png"):
        assert decode_image(images[name]).mode == "RGB", name
    # arrays and PIL images are accepted as well as bytes, with the same result
    arr = _photo(210, 300, 9)
    cfg = CONFIGS["lite0"]
    a, b, c = preprocess([arr, Image.fromarray(arr), _encode(Image.fromarray(arr), "PNG")], cfg)
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_draft_decode_is_a_close_approximation_only_for_large_jpegs() -> None:
    cfg = CONFIGS["lite0"]
    large = _encode(Image.fromarray(_photo(800, 1100, 8)).filter(ImageFilter.BLUR), "JPEG")
    small = _odd_images()["landscape"]  # below twice the 256 px resize target: untouched
    exact, approx = preprocess([large, small], cfg), preprocess([large, small], cfg, draft=True)
    assert np.array_equal(exact[1], approx[1])
    diff = np.abs(exact[0] - approx[0])
    assert 0 < diff.mean() < 0.01 and diff.max() < 0.2


def test_from_model_and_json_round_trip() -> None:
    import timm

    cfg = PreprocessConfig.from_model(timm.create_model("tf_efficientnet_lite0"))
    assert cfg == CONFIGS["lite0"]
    again = PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and hash(again) == hash(cfg)
    small = PreprocessConfig.from_model(timm.create_model("tf_efficientnet_lite0"), input_size=64)
    assert small.input_size == (3, 64, 64) and small.mean == cfg.mean


def test_undecodable_bytes_name_the_index() -> None:
    images = _odd_images()
    good = images["landscape"]
    with pytest.raises(ValueError, match=r"image #1 cannot be decoded"):
        preprocess([good, b"not an image at all", good], CONFIGS["lite0"])
    with pytest.raises(ValueError, match=r"image #0 cannot be decoded"):
        preprocess([good[: len(good) // 2]], CONFIGS["lite0"])  # truncated JPEG


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_size": (1, 224, 224)}, "input_size"),
        ({"interpolation": "magic"}, "interpolation"),
        ({"crop_mode": "zoom"}, "crop_mode"),
        ({"crop_pct": 1.5}, "crop_pct"),
        ({"std": (0.5, 0.0, 0.5)}, "std"),
    ],
)
def test_invalid_configs_are_rejected(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PreprocessConfig(**{**LITE0, **change})


def test_serving_path_does_not_import_torch() -> None:
    code = (
        "import sys, pawpaw.model.preprocess, pawpaw.model.embed; "
        "bad = [m for m in ('torch', 'torchvision', 'timm') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
