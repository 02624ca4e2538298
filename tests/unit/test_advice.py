"""Advice for a better pet photo: each measurable problem is named, a good photo is left alone."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter
from skimage import data as samples

from pawpaw.advice import Advice, advise, measure_photo

pytestmark = pytest.mark.unit

PROBLEMS = {"blurry", "soft", "dark", "overexposed", "low_contrast", "low_resolution"}


def _encode(img: Image.Image, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=92) if fmt == "JPEG" else img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    """scikit-image's `chelsea` at phone-photo size (902x600): a sharp, well-exposed pet."""
    small = Image.fromarray(samples.chelsea())
    return small.resize((small.width * 2, small.height * 2), Image.Resampling.LANCZOS)


def _codes(advice: list[Advice]) -> list[str]:
    return [a.code for a in advice]


def test_good_photo_gets_no_problem_reported(cat: Image.Image) -> None:
    advice = advise(_encode(cat), 55.0)
    assert not PROBLEMS & set(_codes(advice)), advice
    assert advice[0].code == "score_good"


def test_blurred_photo_is_called_blurry(cat: Image.Image) -> None:
    blurred = cat.filter(ImageFilter.GaussianBlur(6))
    advice = advise(_encode(blurred), 20.0)
    assert "blurry" in _codes(advice)
    blurry = next(a for a in advice if a.code == "blurry")
    assert blurry.severity == "warning"
    assert "focus" in blurry.message and "steady" in blurry.message


def test_dark_photo_is_called_dark_not_blurry(cat: Image.Image) -> None:
    dark = Image.fromarray((np.asarray(cat, dtype=np.float32) * 0.2).astype(np.uint8))
    codes = _codes(advise(_encode(dark), 30.0))
    assert "dark" in codes
    # Sharpness is a ratio of derivatives: darkening the photo does not make it look blurred.
    assert "blurry" not in codes and "soft" not in codes


def test_tiny_photo_is_called_low_resolution(cat: Image.Image) -> None:
    tiny = cat.resize((120, 80))
    advice = advise(_encode(tiny), 30.0)
    low = next(a for a in advice if a.code == "low_resolution")
    assert "120x80" in low.message and low.severity == "warning"


def test_overexposed_and_hazy_photos(cat: Image.Image) -> None:
    arr = np.asarray(cat, dtype=np.float32)
    bright = Image.fromarray(np.clip(arr * 1.8 + 60, 0, 255).astype(np.uint8))
    assert "overexposed" in _codes(advise(_encode(bright), 30.0))
    hazy = Image.fromarray((arr * 0.4 + 110).astype(np.uint8))
    assert "low_contrast" in _codes(advise(_encode(hazy), 30.0))


def test_extreme_aspect_ratio(cat: Image.Image) -> None:
    strip = cat.crop((0, 200, cat.width, 500))  # 902x300: 3:1
    advice = advise(_encode(strip), 30.0)
    wide = next(a for a in advice if a.code == "extreme_aspect")
    assert "wide" in wide.message and "3.0:1" in wide.message


def test_small_subject_in_a_corner(cat: Image.Image) -> None:
    canvas = Image.new("RGB", (1200, 900), (196, 188, 176))
    canvas.paste(cat.resize((225, 150)), (900, 80))
    advice = advise(_encode(canvas), 15.0)
    codes = _codes(advice)
    assert "subject_small" in codes
    off = next(a for a in advice if a.code == "off_centre")
    assert "right" in off.message


def test_centred_subject_is_not_called_off_centre(cat: Image.Image) -> None:
    canvas = Image.new("RGB", (1200, 900), (196, 188, 176))
    canvas.paste(cat, (150, 150))
    assert "off_centre" not in _codes(advise(_encode(canvas), 50.0))


@pytest.mark.parametrize(
    ("score", "code"),
    [(8.0, "score_low"), (30.0, "score_typical"), (55.0, "score_good"), (85.0, "score_great")],
)
def test_score_band_comes_first(cat: Image.Image, score: float, code: str) -> None:
    advice = advise(cat, score)  # a decoded PIL image is accepted too
    assert advice[0].code == code
    assert f"{score:.0f}" in advice[0].message


def test_problems_are_ordered_by_severity_and_serialisable(cat: Image.Image) -> None:
    tiny_blurred = cat.resize((200, 133)).filter(ImageFilter.GaussianBlur(3))
    advice = advise(_encode(tiny_blurred, "PNG"), 12.0)
    order = {"warning": 0, "tip": 1, "info": 2}
    ranks = [order[a.severity] for a in advice[1:]]
    assert ranks == sorted(ranks)
    assert all(set(a.to_dict()) == {"code", "message", "severity"} for a in advice)
    assert all(a.message.strip() for a in advice)


def test_measurements_do_not_depend_on_upload_size(cat: Image.Image) -> None:
    big = measure_photo(_encode(cat.resize((1804, 1200), Image.Resampling.LANCZOS)))
    small = measure_photo(_encode(cat))
    assert (big.width, big.height) == (1804, 1200)
    assert abs(big.brightness - small.brightness) < 0.01
    assert big.sharpness is not None and small.sharpness is not None
    assert big.sharpness > 1.1 and small.sharpness > 1.1


def test_flat_picture_has_no_sharpness_or_layout() -> None:
    grey = Image.new("RGB", (640, 480), (128, 128, 128))
    m = measure_photo(_encode(grey, "PNG"))
    assert m.sharpness is None and m.centroid is None and m.subject_share is None
    codes = _codes(advise(_encode(grey, "PNG"), 10.0))
    assert "low_contrast" in codes and "blurry" not in codes


def test_not_an_image_raises() -> None:
    with pytest.raises(ValueError, match="not a readable image"):
        advise(b"definitely not a photo", 50.0)
