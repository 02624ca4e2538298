"""Photo statistics mean what the advice page and drift monitoring read into them."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance, ImageFilter
from skimage import data as skdata

from pawpaw.data.image_stats import STAT_COLUMNS, describe_images, measure_image
from pawpaw.data.labeled import LabeledImages
from pawpaw.schema import ID

pytestmark = pytest.mark.unit


def _jpeg(image: Image.Image, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, **save)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    """A real photo (scikit-image's `chelsea`, 451 x 300), not a drawing."""
    return Image.fromarray(skdata.chelsea())


def test_measures_every_stat_column_in_range(cat: Image.Image) -> None:
    stats = measure_image(_jpeg(cat))
    assert tuple(stats) == STAT_COLUMNS
    assert 0.2 < stats["brightness"] < 0.8
    assert 0.0 < stats["contrast"] < 0.5
    assert 0.0 < stats["saturation"] < 1.0
    assert stats["sharpness"] > 0.002
    assert (stats["width"], stats["height"]) == (451.0, 300.0)
    assert stats["aspect_ratio"] == pytest.approx(451 / 300)


def test_blur_clearly_lowers_sharpness(cat: Image.Image) -> None:
    sharp = measure_image(_jpeg(cat))["sharpness"]
    blurred = measure_image(_jpeg(cat.filter(ImageFilter.GaussianBlur(2))))["sharpness"]
    very_blurred = measure_image(_jpeg(cat.filter(ImageFilter.GaussianBlur(5))))["sharpness"]
    assert blurred < sharp / 5
    assert very_blurred < blurred


def test_darkening_lowers_brightness_and_keeps_colour(cat: Image.Image) -> None:
    bright = measure_image(_jpeg(cat))
    dark = measure_image(_jpeg(ImageEnhance.Brightness(cat).enhance(0.4)))
    assert dark["brightness"] == pytest.approx(0.4 * bright["brightness"], rel=0.1)
    assert dark["contrast"] < bright["contrast"]
    assert dark["saturation"] == pytest.approx(bright["saturation"], abs=0.05)


def test_grey_photo_has_zero_saturation(cat: Image.Image) -> None:
    grey = measure_image(_jpeg(cat.convert("L")))
    as_rgb = measure_image(cat.convert("L").convert("RGB"))
    assert grey["saturation"] == 0.0
    assert as_rgb["saturation"] == 0.0
    assert grey["brightness"] == pytest.approx(measure_image(cat)["brightness"], abs=0.01)


def test_sharpness_does_not_depend_on_resolution(cat: Image.Image) -> None:
    small = measure_image(_jpeg(cat))
    large = measure_image(_jpeg(cat.resize((1804, 1200), Image.Resampling.LANCZOS)))
    assert (large["width"], large["height"]) == (1804.0, 1200.0)
    assert large["sharpness"] == pytest.approx(small["sharpness"], rel=0.35)


def test_exif_rotation_swaps_displayed_size(cat: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display: a portrait photo
    stats = measure_image(_jpeg(cat, exif=exif.tobytes()))
    assert (stats["width"], stats["height"]) == (300.0, 451.0)
    assert stats["aspect_ratio"] == pytest.approx(300 / 451)


def test_pil_image_and_bytes_agree_and_caller_image_is_untouched(cat: Image.Image) -> None:
    encoded = _jpeg(cat)
    opened = Image.open(io.BytesIO(encoded))
    from_image = measure_image(opened)
    assert opened.size == (451, 300)  # no draft() on the caller's image
    assert from_image == pytest.approx(measure_image(encoded))


def test_transparent_png_is_measured_on_white() -> None:
    clear = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    buffer = io.BytesIO()
    clear.save(buffer, "PNG")
    stats = measure_image(buffer.getvalue())
    assert stats["brightness"] == pytest.approx(1.0)
    assert stats["sharpness"] == 0.0


def test_unreadable_bytes_raise_value_error() -> None:
    with pytest.raises(ValueError, match="not a readable image"):
        measure_image(b"definitely not a jpeg")


def _images(n: int) -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    out = {}
    for i in range(n):
        level = 40 + 40 * i  # each photo brighter than the last
        pixels = np.clip(rng.normal(level, 25, (30 + 10 * i, 50, 3)), 0, 255).astype(np.uint8)
        out[f"{i:032x}"] = _jpeg(Image.fromarray(pixels))
    return out


def test_describe_images_keeps_row_order_and_index() -> None:
    images = _images(4)
    ids = list(images)[::-1]  # frame order differs from generation order
    frame = pd.DataFrame({ID: ids, "Pawpularity": [1, 2, 3, 4]}, index=[10, 11, 12, 13])
    stats = describe_images(LabeledImages(frame=frame, load=images.__getitem__), workers=2)
    assert list(stats.columns) == [ID, *STAT_COLUMNS]
    assert list(stats.index) == [10, 11, 12, 13]
    assert list(stats[ID]) == ids
    assert stats["brightness"].is_monotonic_decreasing  # reversed order of brightness
    assert list(stats["height"]) == [60.0, 50.0, 40.0, 30.0]
    assert stats.drop(columns=ID).notna().all().all()


def test_describe_images_names_the_broken_image() -> None:
    images = _images(2)
    images["f" * 32] = b"\xff\xd8 truncated"
    frame = pd.DataFrame({ID: list(images)})
    source = LabeledImages(frame=frame, load=images.__getitem__, source="lakefs://repo/abc/test")
    with pytest.raises(ValueError, match=rf"image {'f' * 32} from lakefs://repo/abc/test"):
        describe_images(source, workers=2)
