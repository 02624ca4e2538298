"""The picture of a row: its flags and visible appeal, drawn (:func:`render_image`).

A photograph is a scene with its figures (:mod:`pawpaw.synth.figures`) or, for a Collage, a
grid of such photos; then Blur blurs it, the appeal ``a`` lights it and Info lays a banner on
top. The appeal is a warm, bright, colourful "golden hour" light with bokeh sparkles over the
whole frame, and bigger, sparkling eyes: so the score can only be predicted from the pixels,
up to the noise. Each element has its own random stream of ``(seed, index)``: the same
arguments give the same pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from pawpaw.schema import FLAGS
from pawpaw.synth.figures import FURS, draw_human, draw_occluder, draw_pet, draw_speed_lines, scene

__all__ = ["render_image"]

# Element streams: each element draws from its own generator, so toggling one flag changes only
# the pixels of that element (and a shift moves only what it names).
_S_SCENE, _S_PET, _S_HUMAN, _S_OCCLUDER, _S_COLLAGE, _S_INFO, _S_LIGHT, _S_ACTION, _S_GROUP = range(
    9
)

_BANNERS = ((250, 250, 250), (250, 220, 0), (220, 30, 40), (20, 20, 20), (30, 110, 220))
_TEXTS = (
    "ADOPT ME",
    "Name: Luna",
    "Milo - 2 yrs",
    "Vaccinated",
    "Call 012-345 6789",
    "FOR ADOPTION",
    "Spayed, 4 months",
    "petfinder.my",
)
_GRID_LINE = (246, 246, 246)
# Appeal's light at appeal = 1: colour gain, warm tint, sun glow, number of bokeh sparkles.
_LIGHT_SATURATION = 1.6
_LIGHT_WARMTH = 0.45
_LIGHT_GLOW = 0.6
_LIGHT_SPARKLES = 30


@dataclass
class _Layout:
    """Where things were drawn (for tests and for reasoning about a picture)."""

    subject: tuple[int, int, int, int] = (0, 0, 0, 0)  # main pet's box (x0, y0, x1, y1)
    pets: int = 0
    occluder: tuple[int, int, int, int] | None = None
    banner: tuple[int, int, int, int] | None = None
    grid: tuple[int, int] | None = None  # collage rows, cols
    grid_lines: list[tuple[int, int, int, int]] = field(default_factory=list)


def _rng(seed: int, index: int, stream: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, stream, *extra])


def _compose(
    flags: Mapping[str, int],
    appeal: float,
    w: int,
    h: int,
    seed: int,
    index: int,
    tile: tuple[int, ...] = (),
) -> tuple[Image.Image, _Layout]:
    """One photograph (or one collage tile): scene, person, pets, occluder, speed lines."""
    layout = _Layout()
    img = scene(w, h, bool(flags["Subject Focus"]), _rng(seed, index, _S_SCENE, *tile))
    if flags["Human"]:
        draw_human(img, _rng(seed, index, _S_HUMAN, *tile))
    pet_rng = _rng(seed, index, _S_PET, *tile)
    draw = ImageDraw.Draw(img)
    m = min(w, h)
    near = bool(flags["Near"])
    # Near: a close-up, the head alone a fifth to a quarter of the frame; far: a small pet.
    r = m * (pet_rng.uniform(0.17, 0.22) if near else pet_rng.uniform(0.06, 0.085))
    focus = bool(flags["Subject Focus"])
    cx = w * (0.5 if focus else pet_rng.uniform(0.38, 0.62))
    cy = h * (0.4 if focus else pet_rng.uniform(0.3, 0.45))
    fur = FURS[int(pet_rng.integers(len(FURS)))]
    cat = bool(pet_rng.random() < 0.5)
    companions = 0
    if flags["Group"]:
        # Companions to either side, a little smaller, in their own colours (own stream: the
        # main pet looks the same with or without them).
        group_rng = _rng(seed, index, _S_GROUP, *tile)
        companions = int(group_rng.integers(1, 4))
        for k in range(companions):
            side = -1.0 if k % 2 == 0 else 1.0
            draw_pet(
                draw,
                cx + side * (1.9 + 1.6 * (k // 2)) * r,
                cy + group_rng.uniform(-0.2, 0.4) * r,
                r * group_rng.uniform(0.7, 0.95),
                fur=FURS[int(group_rng.integers(len(FURS)))],
                cat=bool(group_rng.random() < 0.5),
                face=bool(flags["Face"]),
                eyes=bool(flags["Eyes"]),
                accessory=False,
                action=False,
                appeal=appeal,
                rng=group_rng,
            )
    layout.subject = draw_pet(
        draw,
        cx,
        cy,
        r,
        fur=fur,
        cat=cat,
        face=bool(flags["Face"]),
        eyes=bool(flags["Eyes"]),
        accessory=bool(flags["Accessory"]),
        action=bool(flags["Action"]),
        appeal=appeal,
        rng=pet_rng,
    )
    layout.pets = 1 + companions
    if flags["Action"]:
        draw_speed_lines(img, layout.subject, _rng(seed, index, _S_ACTION, *tile))
    if flags["Occlusion"]:
        layout.occluder = draw_occluder(img, layout.subject, _rng(seed, index, _S_OCCLUDER, *tile))
    return img, layout


def _collage(
    flags: Mapping[str, int], appeal: float, w: int, h: int, seed: int, index: int
) -> tuple[Image.Image, _Layout]:
    """A grid of smaller photos (each its own scene), separated by light lines."""
    rng = _rng(seed, index, _S_COLLAGE)
    rows, cols = ((1, 2), (2, 1), (2, 2), (2, 3), (3, 2), (3, 3))[int(rng.integers(6))]
    gap = max(3, round(min(w, h) * 0.025))
    img = Image.new("RGB", (w, h), _GRID_LINE)
    tile_flags = {**flags, "Collage": 0}
    layout = _Layout(grid=(rows, cols))
    xs = np.linspace(0, w, cols + 1).round().astype(int)
    ys = np.linspace(0, h, rows + 1).round().astype(int)
    for i in range(rows):
        for j in range(cols):
            tw = xs[j + 1] - xs[j] - gap
            th = ys[i + 1] - ys[i] - gap
            tile, tile_layout = _compose(tile_flags, appeal, tw, th, seed, index, (i, j))
            img.paste(tile, (xs[j] + gap // 2, ys[i] + gap // 2))
            if i == 0 and j == 0:
                layout.subject = tile_layout.subject
                layout.pets = tile_layout.pets
    layout.grid_lines = [(int(x), 0, int(x), h) for x in xs[1:-1]] + [
        (0, int(y), w, int(y)) for y in ys[1:-1]
    ]
    return img, layout


def _golden_light(img: Image.Image, appeal: float, rng: np.random.Generator) -> Image.Image:
    """The visible appeal: warm, bright, saturated light, a sun glow and bokeh sparkles.

    Every effect grows linearly with ``appeal`` (0: the picture as drawn), as the score does,
    and covers the whole frame, so frozen ImageNet features at 224 px see it and a linear head
    can read it.
    """
    if appeal <= 0.0:
        return img
    arr = np.asarray(img, dtype=np.float32) / 255.0  # (h, w, 3)
    h, w, _ = arr.shape
    grey = arr.mean(axis=2, keepdims=True)
    arr = grey + (arr - grey) * (1.0 + _LIGHT_SATURATION * appeal)  # more colourful
    warm = _LIGHT_WARMTH * appeal
    arr = arr * np.asarray([1.0 + warm, 1.0 + 0.4 * warm, 1.0 - warm], np.float32)
    lx = 0.0 if rng.random() < 0.5 else float(w)
    yy, xx = np.ogrid[0:h, 0:w]
    d2 = ((xx - lx) ** 2 + yy.astype(np.float32) ** 2) / float(w * w + h * h)  # 0..~1
    light = _LIGHT_GLOW * np.exp(-d2 / 0.35).astype(np.float32)  # (h, w)
    sparkles = round(_LIGHT_SPARKLES * appeal)
    if sparkles:
        # Soft out-of-focus light discs, drawn at quarter size and blurred up (cheap).
        sw, sh = max(8, w // 4), max(8, h // 4)
        layer = Image.new("L", (sw, sh), 0)
        draw = ImageDraw.Draw(layer)
        for _ in range(sparkles):
            x, y = rng.uniform(0, sw), rng.uniform(0, sh)
            r = min(sw, sh) * rng.uniform(0.02, 0.06)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=int(rng.integers(150, 256)))
        layer = layer.filter(ImageFilter.GaussianBlur(min(sw, sh) * 0.01 + 0.5))
        layer = layer.resize((w, h), Image.Resampling.BILINEAR)
        light = light + np.asarray(layer, np.float32) / 255.0
    arr = arr + appeal * light[..., None] * np.asarray([1.0, 0.8, 0.45], np.float32)
    return Image.fromarray((arr.clip(0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _info_overlay(img: Image.Image, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A shelter's banner with text, plus a caption in a corner."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    bh = max(14, int(h * rng.uniform(0.13, 0.2)))
    top = rng.random() < 0.5
    box = (0, 0, w, bh) if top else (0, h - bh, w, h)
    colour = _BANNERS[int(rng.integers(len(_BANNERS)))]
    draw.rectangle(box, fill=colour)
    ink = (20, 20, 20) if sum(colour) > 400 else (250, 250, 250)
    text = _TEXTS[int(rng.integers(len(_TEXTS)))]
    font = _font(max(8, int(bh * 0.6)))
    draw.text((w / 2, (box[1] + box[3]) / 2), text, fill=ink, font=font, anchor="mm")
    caption = _TEXTS[int(rng.integers(len(_TEXTS)))]
    cy = h - bh - 4 if top else bh + 4
    small = _font(max(8, int(min(w, h) * 0.06)))
    draw.text(
        (6, cy),
        caption,
        fill=(255, 255, 255),
        font=small,
        anchor="ld" if top else "la",
        stroke_width=1,
        stroke_fill=(0, 0, 0),
    )
    return box


def _render(
    flags: Mapping[str, int], appeal: float, size: tuple[int, int], seed: int, index: int
) -> tuple[Image.Image, _Layout]:
    w, h = size
    if flags["Collage"]:
        img, layout = _collage(flags, appeal, w, h, seed, index)
    else:
        img, layout = _compose(flags, appeal, w, h, seed, index)
    if flags["Blur"]:
        radius = min(w, h) * _rng(seed, index, _S_LIGHT, 1).uniform(0.015, 0.025)
        img = img.filter(ImageFilter.GaussianBlur(radius))
    img = _golden_light(img, appeal, _rng(seed, index, _S_LIGHT))
    if flags["Info"]:  # a digital overlay: sharp and unlit, on top of everything
        layout.banner = _info_overlay(img, _rng(seed, index, _S_INFO))
    return img, layout


def render_image(
    flags: Mapping[str, int], appeal: float, size: tuple[int, int], *, seed: int, index: int
) -> Image.Image:
    """The RGB picture of one row: ``flags`` (name -> 0/1), appeal level in [0, 1], (w, h).

    The same arguments give the same pixels; each element (scene, pets, person, occluder,
    collage, banner, light) has its own random stream of ``(seed, index)``.
    """
    missing = [f for f in FLAGS if f not in flags]
    if missing:
        raise ValueError(f"render_image: flags missing {missing}")
    return _render(flags, float(appeal), size, seed, index)[0]
