"""The synthetic PetFinder pool: Kaggle-format files whose score is driven by what is visible.

Every row gets its twelve flags, a latent *appeal* and a Gaussian noise draw (vectorised, from
``seed``); then one picture per row is drawn from those (seeded by ``(seed, row)``), so the
score can only be predicted from the pixels, up to the noise. The score model
(:class:`ScoreModel`) is::

    u      ~ N(appeal_shift, 1)                         latent appeal, in "appeal std units"
    a      = min(1, appeal_k * Phi(u) ** appeal_power)   visible appeal level in [0, 1]
    signal = base + appeal_effect * a + sum_f effect_f * flag_f
    score  = clip(floor(signal + eps + 0.5), 1, 100),   eps ~ N(0, noise_sigma^2)

``a`` is what the picture shows: a warm, bright, colourful "golden hour" light with bokeh
sparkles over the whole frame, and bigger, sparkling eyes (:func:`render_image`). Most pets
have ``a`` near 0 and a few are stars with ``a`` near 1; that tail is what skews the scores to
the right (mean above median) and piles 2.9% of them up at the cap of 100, as in the Kaggle
data. The flags are visible too but, as in the real data, move the score by only a point or
two: a linear model on the flags barely beats the mean.

The *noise-free score* of a row is the expectation of its score given its signal,
``E[score | signal] = 1 + sum_{j=2..100} Phi((signal - j + 0.5) / noise_sigma)``: the best any
predictor of the picture can do under squared error. The *noise floor* written to
``synth.json`` is the RMSE between that expectation and the final scores over the rows;
``synth_truth.csv`` holds both per row so anyone can recompute it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from multiprocessing import current_process, get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from pawpaw.data.kaggle import summarize
from pawpaw.schema import COLUMNS, FLAGS, ID, TARGET

__all__ = [
    "FLAG_SHARES",
    "GENERATOR_VERSION",
    "SCORE_MODEL",
    "TRUTH_COLUMNS",
    "ScoreModel",
    "Shift",
    "expected_score",
    "generate",
    "render_image",
    "sample_rows",
]

# Bump when the same (seed, n, shift, size_range) would give different files: a pool on disk
# made by another version is then refused (FileExistsError) instead of silently reused.
GENERATOR_VERSION = 1

# Share of rows with each flag in the Kaggle train.csv (DATA_FACTS.md).
FLAG_SHARES: dict[str, float] = {
    "Subject Focus": 0.028,
    "Eyes": 0.773,
    "Face": 0.904,
    "Near": 0.862,
    "Action": 0.010,
    "Accessory": 0.068,
    "Group": 0.129,
    "Collage": 0.050,
    "Human": 0.166,
    "Occlusion": 0.172,
    "Info": 0.061,
    "Blur": 0.070,
}

# Per-row columns of synth_truth.csv (besides Id): everything the score was made of.
TRUTH_COLUMNS: tuple[str, ...] = (
    "width",
    "height",
    "appeal_latent",
    "appeal",
    "signal",
    "noise",
    "noise_free",
)

_JPEG_QUALITY = 90
_CSV_FLOAT = "%.6f"


@dataclass(frozen=True)
class ScoreModel:
    """How the visible attributes make the score (see the module docstring for the formula).

    The defaults were fitted (200k simulated rows, the flag shares above) to the Kaggle score
    distribution: mean 38, std 20.6, 2.9% at 100, 95th percentile 83; see ``synth.json`` of any
    pool for what a given sample realised. With Gaussian noise of sigma 16 the quartiles come
    out near 24 / 35 / 48 instead of 25 / 33 / 46: noise alone already has an interquartile
    range of 21.6, so no additive-noise model can be as tight as the real data there.
    """

    base: float = 30.16
    noise_sigma: float = 16.0
    appeal_effect: float = 78.46  # score points from a = 0 to a = 1
    appeal_k: float = 1.69
    appeal_power: float = 21.0
    flag_effects: Mapping[str, float] = field(
        default_factory=lambda: {
            "Subject Focus": 2.0,
            "Eyes": 1.0,
            "Face": 1.0,
            "Near": 1.0,
            "Action": 3.0,
            "Accessory": 1.0,
            "Group": 2.0,
            "Collage": -1.0,
            "Human": 1.0,
            "Occlusion": -1.0,
            "Info": -1.0,
            "Blur": -3.0,
        }
    )

    def appeal_level(self, latent: np.ndarray) -> np.ndarray:
        """Visible appeal ``a`` in [0, 1] from the latent ``u``."""
        from scipy.special import ndtr

        return np.minimum(1.0, self.appeal_k * ndtr(latent) ** self.appeal_power)

    def to_dict(self) -> dict[str, Any]:
        return {
            "formula": (
                "u ~ N(appeal_shift, 1); a = min(1, appeal_k * Phi(u) ** appeal_power); "
                "signal = base + appeal_effect * a + sum(flag_effects[f] * flag_f); "
                "score = clip(floor(signal + eps + 0.5), 1, 100), eps ~ N(0, noise_sigma^2)"
            ),
            "noise_free": (
                "E[score | signal] = 1 + sum_{j=2..100} Phi((signal - j + 0.5) / noise_sigma)"
            ),
            **{k: v for k, v in asdict(self).items() if k != "flag_effects"},
            "flag_effects": dict(self.flag_effects),
        }


SCORE_MODEL = ScoreModel()


@dataclass(frozen=True)
class Shift:
    """A shifted population: flag shares overridden, appeal moved by ``appeal_shift`` std units.

    ``Shift(flag_shares={"Blur": 0.5}, appeal_shift=-1.0)`` blurs half of the pictures and
    lowers every pet's latent appeal by one standard deviation (fewer stars, lower scores).
    """

    flag_shares: Mapping[str, float] = field(default_factory=dict)
    appeal_shift: float = 0.0

    def __post_init__(self) -> None:
        for name, share in self.flag_shares.items():
            if name not in FLAGS:
                raise ValueError(f"shift: unknown flag {name!r}; flags are {', '.join(FLAGS)}")
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"shift: share of {name!r} must be in 0..1, got {share}")
        if not math.isfinite(self.appeal_shift) or abs(self.appeal_shift) > 5:
            raise ValueError(f"shift: appeal must be within -5..5 std, got {self.appeal_shift}")
        shares = self.shares()
        if shares["Eyes"] > shares["Face"]:
            # Eyes are drawn on faces: a pet with visible eyes shows its face.
            raise ValueError(
                f"shift: Eyes share {shares['Eyes']} exceeds Face share {shares['Face']}"
            )

    @classmethod
    def parse(cls, items: Iterable[str]) -> Shift:
        """``["Blur=0.5", "Subject Focus=0.1", "appeal=-1"]`` -> Shift (names case-insensitive,
        ``_``/``-`` may stand for spaces)."""
        by_key = {_key(f): f for f in FLAGS}
        shares: dict[str, float] = {}
        appeal = 0.0
        for item in items:
            name, sep, value = item.rpartition("=")
            try:
                if not sep or not name.strip():
                    raise ValueError
                number = float(value)
            except ValueError:
                raise ValueError(
                    f"shift {item!r}: expected NAME=VALUE, e.g. Blur=0.5 or appeal=-1"
                ) from None
            key = _key(name)
            if key == "appeal":
                appeal = number
            elif key in by_key:
                shares[by_key[key]] = number
            else:
                raise ValueError(
                    f"shift {item!r}: unknown name {name.strip()!r}; "
                    f"use appeal or one of {', '.join(FLAGS)}"
                )
        return cls(flag_shares=shares, appeal_shift=appeal)

    def shares(self) -> dict[str, float]:
        """The flag shares of the shifted population."""
        return {**FLAG_SHARES, **self.flag_shares}

    def to_dict(self) -> dict[str, Any]:
        return {
            "flag_shares": {f: self.flag_shares[f] for f in FLAGS if f in self.flag_shares},
            "appeal_shift": self.appeal_shift,
        }


def _key(name: str) -> str:
    return name.strip().lower().replace("_", " ").replace("-", " ")


# --- rows: flags, appeal, noise, score ------------------------------------------------------


def expected_score(signal: np.ndarray, sigma: float) -> np.ndarray:
    """``E[clip(floor(signal + eps + 0.5), 1, 100)]`` for ``eps ~ N(0, sigma^2)``.

    The score is 1 plus the number of thresholds ``j - 0.5`` (j = 2..100) that
    ``signal + eps`` reaches, so its expectation is a sum of normal tail probabilities.
    """
    from scipy.special import ndtr

    signal = np.asarray(signal, dtype=np.float64)
    thresholds = np.arange(2, 101) - 0.5
    out = np.ones(signal.shape, dtype=np.float64)
    for t in thresholds:  # 99 vector passes: no (rows x 99) temporary
        out += ndtr((signal - t) / sigma)
    return out


def _expected_variance(signal: np.ndarray, sigma: float) -> np.ndarray:
    """``Var[score | signal]``: from the distribution over the 100 possible scores."""
    from scipy.special import ndtr

    edges = np.concatenate(([-np.inf], np.arange(2, 101) - 0.5, [np.inf]))  # 101 edges
    cdf = ndtr((edges[None, :] - np.asarray(signal, dtype=np.float64)[:, None]) / sigma)
    p = np.diff(cdf, axis=1)  # (rows, 100): P(score = k), k = 1..100
    k = np.arange(1, 101, dtype=np.float64)
    mean = p @ k
    return np.maximum(p @ (k * k) - mean * mean, 0.0)


def _row_id(seed: int, index: int) -> str:
    # 32 hex chars like the Kaggle Ids; differs across seeds, so pools can be mixed.
    return hashlib.blake2b(f"pawpaw-synth/{seed}/{index}".encode(), digest_size=16).hexdigest()


def sample_rows(
    n: int,
    seed: int = 0,
    shift: Shift | None = None,
    *,
    size_range: tuple[int, int] = (224, 512),
    model: ScoreModel = SCORE_MODEL,
) -> pd.DataFrame:
    """The table of a pool without its pictures: ``COLUMNS`` then ``TRUTH_COLUMNS``.

    Flags, appeal, noise and image sizes come from independent streams of ``seed``, and each
    flag is a threshold on its own uniform draw: so a shift changes only what it names (with
    Blur 0.07 -> 0.5, every row blurred before stays blurred, and nothing else moves). Eyes
    are drawn only on faces, so a Face share also moves Eyes (and may not fall below it).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    lo, hi = size_range
    if not 32 <= lo <= hi <= 4096:
        raise ValueError(f"size_range must satisfy 32 <= min <= max <= 4096, got {size_range}")
    shift = shift or Shift()
    shares = shift.shares()
    flags_rng, appeal_rng, noise_rng, size_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )

    draws = flags_rng.random((n, len(FLAGS)))
    flags = {f: (draws[:, j] < shares[f]).astype(np.int64) for j, f in enumerate(FLAGS)}
    # Eyes only where a face shows: P(Eyes | Face) keeps the Eyes share as asked.
    eyes_given_face = shares["Eyes"] / shares["Face"] if shares["Face"] > 0 else 0.0
    flags["Eyes"] = flags["Face"] * (draws[:, FLAGS.index("Eyes")] < eyes_given_face)

    latent = appeal_rng.standard_normal(n) + shift.appeal_shift
    appeal = model.appeal_level(latent)
    signal = model.base + model.appeal_effect * appeal
    for f in FLAGS:
        signal = signal + model.flag_effects.get(f, 0.0) * flags[f]
    noise = noise_rng.normal(0.0, model.noise_sigma, n)
    score = np.clip(np.floor(signal + noise + 0.5), 1, 100).astype(np.int64)
    sizes = size_rng.integers(lo, hi + 1, size=(n, 2))  # each side independently: both shapes

    frame = pd.DataFrame({ID: [_row_id(seed, i) for i in range(n)]})
    for f in FLAGS:
        frame[f] = flags[f].astype(np.int64)
    frame[TARGET] = score
    frame["width"] = sizes[:, 0]
    frame["height"] = sizes[:, 1]
    frame["appeal_latent"] = latent
    frame["appeal"] = appeal
    frame["signal"] = signal
    frame["noise"] = noise
    frame["noise_free"] = expected_score(signal, model.noise_sigma)
    return frame


# --- pictures ---------------------------------------------------------------------------------

# Element streams: each element draws from its own generator, so toggling one flag changes only
# the pixels of that element (and a shift moves only what it names).
_S_SCENE, _S_PET, _S_HUMAN, _S_OCCLUDER, _S_COLLAGE, _S_INFO, _S_LIGHT, _S_ACTION, _S_GROUP = range(
    9
)

_FURS = (
    (214, 134, 52),  # ginger
    (40, 34, 32),  # black
    (236, 232, 222),  # white
    (128, 128, 134),  # grey
    (116, 78, 44),  # brown
    (222, 192, 142),  # cream
    (164, 122, 82),  # tabby brown
)
_IRISES = ((92, 160, 60), (214, 160, 40), (70, 120, 200), (120, 72, 30))
_SKINS = ((240, 204, 176), (214, 164, 124), (160, 108, 72), (96, 62, 40))
_ACCESSORY = ((220, 30, 40), (30, 90, 220), (240, 80, 170), (250, 200, 0))
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


def _muted(rng: np.random.Generator, value: tuple[float, float]) -> tuple[int, int, int]:
    """A dull colour: low saturation, medium value; appeal's warm glow stays distinguishable."""
    import colorsys

    h, s, v = rng.random(), rng.uniform(0.08, 0.4), rng.uniform(*value)
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def _vertical_gradient(w: int, h: int, top: Sequence[int], bottom: Sequence[int]) -> np.ndarray:
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]  # (h, 1, 1)
    col = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)  # (h, 1, 3)
    return np.broadcast_to(col, (h, w, 3))


def _scene(w: int, h: int, focus: bool, rng: np.random.Generator) -> Image.Image:
    """Background: a room with clutter, or (Subject Focus) a plain studio backdrop."""
    if focus:
        # One smooth colour with a soft vignette: nothing competes with the subject.
        colour = np.asarray(_muted(rng, (0.55, 0.8)), np.float32)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d = ((xx - w / 2) / w) ** 2 + ((yy - h / 2) / h) ** 2  # 0 at centre, 0.5 at corners
        arr = colour[None, None, :] * (1.0 - 0.5 * d)[..., None]
        return Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    wall, floor = _muted(rng, (0.35, 0.75)), _muted(rng, (0.25, 0.6))
    horizon = int(h * rng.uniform(0.5, 0.75))
    arr = np.empty((h, w, 3), np.float32)
    arr[:horizon] = _vertical_gradient(w, horizon, wall, np.asarray(wall) * 0.85)
    arr[horizon:] = _vertical_gradient(w, h - horizon, floor, np.asarray(floor) * 0.7)
    img = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 7))):  # furniture, frames, toys: clutter
        x0, y0 = rng.uniform(-0.1, 0.9) * w, rng.uniform(0.0, 0.9) * h
        bw, bh = rng.uniform(0.1, 0.4) * w, rng.uniform(0.08, 0.35) * h
        box = (x0, y0, x0 + bw, y0 + bh)
        colour = _muted(rng, (0.2, 0.8))
        if rng.random() < 0.5:
            draw.rectangle(box, fill=colour)
        else:
            draw.ellipse(box, fill=colour)
    return img


def _draw_pet(
    draw: ImageDraw.ImageDraw,
    cx: float,
    cy: float,
    r: float,
    *,
    fur: tuple[int, int, int],
    cat: bool,
    face: bool,
    eyes: bool,
    accessory: bool,
    action: bool,
    appeal: float,
    rng: np.random.Generator,
) -> tuple[int, int, int, int]:
    """One cartoon pet, head radius ``r`` centred at (cx, cy); returns its box."""
    dark = tuple(int(c * 0.6) for c in fur)
    # Body: sitting (tall) or, in action, stretched out in a leap.
    bw, bh = (3.4 * r, 1.3 * r) if action else (2.4 * r, 2.0 * r)
    bx = cx - (0.9 * r if action else 0.0)
    by = cy + (0.9 * r if action else 1.5 * r)
    body = (bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2)
    # The tail first: the body hides its root.
    tail_dir = -1.0 if rng.random() < 0.5 else 1.0
    draw.line(
        [(bx + tail_dir * bw / 2.2, by), (bx + tail_dir * bw / 1.6, by - bh * 0.8)],
        fill=dark,
        width=max(2, int(r / 5)),
    )
    draw.ellipse(body, fill=fur, outline=dark, width=max(1, int(r / 14)))
    if action:  # legs flung out
        for dx in (-0.35, 0.35):
            x = bx + dx * bw
            draw.line([(x, by), (x + dx * 1.5 * r, by + 0.9 * r)], fill=fur, width=int(r / 3))
    # Ears: pointed (cat) or floppy (dog).
    for side in (-1.0, 1.0):
        if cat:
            ear = [
                (cx + side * 0.95 * r, cy - 0.2 * r),
                (cx + side * 0.75 * r, cy - 1.35 * r),
                (cx + side * 0.15 * r, cy - 0.85 * r),
            ]
            draw.polygon(ear, fill=fur, outline=dark)
        else:
            draw.ellipse(
                (
                    cx + side * 0.7 * r - 0.35 * r,
                    cy - 0.6 * r,
                    cx + side * 0.7 * r + 0.35 * r,
                    cy + 0.7 * r,
                ),
                fill=dark,
            )
    draw.ellipse(
        (cx - r, cy - r, cx + r, cy + r), fill=fur, outline=dark, width=max(1, int(r / 14))
    )
    if accessory:  # a bright collar with a bow
        colour = _ACCESSORY[int(rng.integers(len(_ACCESSORY)))]
        y = cy + 0.92 * r
        draw.rounded_rectangle(
            (cx - 0.8 * r, y - 0.14 * r, cx + 0.8 * r, y + 0.14 * r), radius=0.1 * r, fill=colour
        )
        draw.polygon(
            [(cx, y), (cx - 0.45 * r, y - 0.3 * r), (cx - 0.45 * r, y + 0.3 * r)], fill=colour
        )
        draw.polygon(
            [(cx, y), (cx + 0.45 * r, y - 0.3 * r), (cx + 0.45 * r, y + 0.3 * r)], fill=colour
        )
    if face:
        if not cat:  # snout
            draw.ellipse(
                (cx - 0.42 * r, cy + 0.05 * r, cx + 0.42 * r, cy + 0.7 * r),
                fill=tuple(min(255, c + 40) for c in fur),
            )
        draw.polygon(
            [(cx - 0.15 * r, cy + 0.2 * r), (cx + 0.15 * r, cy + 0.2 * r), (cx, cy + 0.36 * r)],
            fill=(230, 120, 140) if cat else (30, 20, 20),
        )
        draw.line(
            [(cx, cy + 0.36 * r), (cx, cy + 0.5 * r)], fill=(30, 20, 20), width=max(1, int(r / 20))
        )
        ey, ex = cy - 0.18 * r, 0.42 * r
        if eyes:
            # Appealing pets have big, sparkling eyes ("cuteness" proportions).
            er = 0.2 * r * (1.0 + 0.7 * appeal)
            iris = _IRISES[int(rng.integers(len(_IRISES)))]
            for side in (-1.0, 1.0):
                x = cx + side * ex
                draw.ellipse(
                    (x - er, ey - er, x + er, ey + er),
                    fill=iris,
                    outline=(20, 20, 20),
                    width=max(1, int(r / 25)),
                )
                pr = er * 0.55
                draw.ellipse((x - pr, ey - pr, x + pr, ey + pr), fill=(10, 10, 10))
                hr = er * (0.25 + 0.2 * appeal)
                hx, hy = x + 0.3 * er, ey - 0.3 * er
                draw.ellipse((hx - hr, hy - hr, hx + hr, hy + hr), fill=(255, 255, 255))
        else:  # closed or turned-down eyes
            for side in (-1.0, 1.0):
                x = cx + side * ex
                draw.arc(
                    (x - 0.2 * r, ey - 0.1 * r, x + 0.2 * r, ey + 0.2 * r),
                    20,
                    160,
                    fill=(20, 20, 20),
                    width=max(1, int(r / 12)),
                )
    else:
        # Seen from behind: the back of the head, no features.
        draw.ellipse((cx - 0.6 * r, cy - 0.5 * r, cx + 0.6 * r, cy + 0.7 * r), fill=dark)
    reach = bw / 1.6 + r / 10  # the tail's tip, with its stroke
    x0 = min(bx - reach, cx - r)
    x1 = max(bx + reach, cx + r)
    y0 = cy - (1.35 if cat else 1.0) * r
    y1 = max(body[3], cy + r) + (0.9 * r if action else 0.0)
    return int(x0), int(y0), math.ceil(x1), math.ceil(y1)


def _draw_human(img: Image.Image, rng: np.random.Generator) -> None:
    """A person beside the pet: torso from the bottom edge, head, an arm reaching in."""
    w, h = img.size
    draw = ImageDraw.Draw(img)
    left = rng.random() < 0.5
    cx = w * (rng.uniform(0.08, 0.22) if left else rng.uniform(0.78, 0.92))
    tw = w * rng.uniform(0.28, 0.38)
    top = h * rng.uniform(0.35, 0.5)
    shirt = _muted(rng, (0.3, 0.85))
    skin = _SKINS[int(rng.integers(len(_SKINS)))]
    draw.rounded_rectangle((cx - tw / 2, top, cx + tw / 2, h + 10), radius=tw / 4, fill=shirt)
    hr = tw * 0.3
    hy = top - hr * 0.9
    draw.ellipse((cx - hr, hy - hr, cx + hr, hy + hr), fill=skin)
    hair = tuple(int(c) for c in rng.integers(10, 120, 3))
    draw.chord((cx - hr, hy - hr, cx + hr, hy + hr), 180, 360, fill=hair)
    # Arm towards the centre, ending in a hand.
    hand = (w * 0.5 + (w * 0.08 if left else -w * 0.08), h * rng.uniform(0.6, 0.8))
    draw.line([(cx, top + tw * 0.25), hand], fill=shirt, width=max(3, int(tw * 0.22)))
    s = tw * 0.13
    draw.ellipse((hand[0] - s, hand[1] - s, hand[0] + s, hand[1] + s), fill=skin)


def _draw_occluder(
    img: Image.Image, subject: tuple[int, int, int, int], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """Something in front of the main pet covering a good part of it: bars, a blanket, a plant."""
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = subject
    sw, sh = x1 - x0, y1 - y0
    kind = int(rng.integers(3))
    colour = _muted(rng, (0.25, 0.75))
    if kind == 0:  # cage bars across the whole subject
        bars = int(rng.integers(3, 6))
        bw = sw / bars * 0.55
        for i in range(bars):
            bx = x0 + (i + 0.5) * sw / bars
            draw.rectangle((bx - bw / 2, y0 - sh * 0.1, bx + bw / 2, y1 + sh * 0.1), fill=colour)
        return int(x0), int(y0 - sh * 0.1), int(x1), int(y1 + sh * 0.1)
    # A blanket / box edge (kind 1) or a leafy plant (kind 2) over one side of the subject.
    frac = rng.uniform(0.45, 0.65)
    if rng.random() < 0.5:  # from the bottom
        box = (x0 - sw * 0.15, y1 - sh * frac, x1 + sw * 0.15, y1 + sh * 0.15)
    else:  # from a side
        box = (
            (x0 - sw * 0.15, y0 - sh * 0.1, x0 + sw * frac, y1 + sh * 0.1)
            if rng.random() < 0.5
            else (x1 - sw * frac, y0 - sh * 0.1, x1 + sw * 0.15, y1 + sh * 0.1)
        )
    if kind == 1:
        draw.rounded_rectangle(box, radius=min(sw, sh) * 0.1, fill=colour)
    else:
        # Leaves: a green mass with lighter and darker leaves on it.
        green = np.asarray((rng.integers(20, 70), rng.integers(110, 170), rng.integers(20, 70)))
        draw.rounded_rectangle(box, radius=min(sw, sh) * 0.2, fill=tuple(int(c) for c in green))
        bx0, by0, bx1, by1 = box
        lr = min(bx1 - bx0, by1 - by0) * 0.22
        for _ in range(12):
            lx, ly = rng.uniform(bx0 + lr, bx1 - lr), rng.uniform(by0 + lr, by1 - lr)
            tone = tuple(int(c) for c in (green * rng.uniform(0.6, 1.3)).clip(0, 255))
            draw.ellipse((lx - lr, ly - lr / 2, lx + lr, ly + lr / 2), fill=tone)
    return tuple(int(v) for v in box)  # type: ignore[return-value]


def _draw_speed_lines(
    img: Image.Image, subject: tuple[int, int, int, int], rng: np.random.Generator
) -> None:
    """Motion streaks trailing the pet."""
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = subject
    sw, sh = x1 - x0, y1 - y0
    for i in range(7):
        y = y0 + sh * (0.15 + 0.7 * i / 6)
        length = sw * rng.uniform(0.6, 1.2)
        start = x0 - sw * 0.05
        draw.line(
            [(start - length, y), (start, y)], fill=(250, 250, 250), width=max(2, int(sh / 40))
        )


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
    img = _scene(w, h, bool(flags["Subject Focus"]), _rng(seed, index, _S_SCENE, *tile))
    if flags["Human"]:
        _draw_human(img, _rng(seed, index, _S_HUMAN, *tile))
    pet_rng = _rng(seed, index, _S_PET, *tile)
    draw = ImageDraw.Draw(img)
    m = min(w, h)
    near = bool(flags["Near"])
    # Near: a close-up, the head alone a fifth to a quarter of the frame; far: a small pet.
    r = m * (pet_rng.uniform(0.17, 0.22) if near else pet_rng.uniform(0.06, 0.085))
    focus = bool(flags["Subject Focus"])
    cx = w * (0.5 if focus else pet_rng.uniform(0.38, 0.62))
    cy = h * (0.4 if focus else pet_rng.uniform(0.3, 0.45))
    fur = _FURS[int(pet_rng.integers(len(_FURS)))]
    cat = bool(pet_rng.random() < 0.5)
    companions = 0
    if flags["Group"]:
        # Companions to either side, a little smaller, in their own colours (own stream: the
        # main pet looks the same with or without them).
        group_rng = _rng(seed, index, _S_GROUP, *tile)
        companions = int(group_rng.integers(1, 4))
        for k in range(companions):
            side = -1.0 if k % 2 == 0 else 1.0
            _draw_pet(
                draw,
                cx + side * (1.9 + 1.6 * (k // 2)) * r,
                cy + group_rng.uniform(-0.2, 0.4) * r,
                r * group_rng.uniform(0.7, 0.95),
                fur=_FURS[int(group_rng.integers(len(_FURS)))],
                cat=bool(group_rng.random() < 0.5),
                face=bool(flags["Face"]),
                eyes=bool(flags["Eyes"]),
                accessory=False,
                action=False,
                appeal=appeal,
                rng=group_rng,
            )
    layout.subject = _draw_pet(
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
        _draw_speed_lines(img, layout.subject, _rng(seed, index, _S_ACTION, *tile))
    if flags["Occlusion"]:
        layout.occluder = _draw_occluder(img, layout.subject, _rng(seed, index, _S_OCCLUDER, *tile))
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


# --- files ------------------------------------------------------------------------------------


def _render_chunk(args: tuple[str, int, list[tuple[Any, ...]]]) -> int:
    """Worker: draw and write the JPEGs of a chunk of rows; returns how many."""
    train_dir, seed, rows = args
    for index, row_id, flag_values, appeal, w, h in rows:
        img, _ = _render(dict(zip(FLAGS, flag_values, strict=True)), appeal, (w, h), seed, index)
        # Fixed quality, no EXIF, no optimisation passes: the same pixels give the same bytes.
        img.save(Path(train_dir) / f"{row_id}.jpg", format="JPEG", quality=_JPEG_QUALITY)
    return len(rows)


def _params(
    n: int, seed: int, shift: Shift, size_range: tuple[int, int], model: ScoreModel
) -> dict[str, Any]:
    return {
        "generator": "pawpaw.synth",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "n": n,
        "size_range": list(size_range),
        "jpeg_quality": _JPEG_QUALITY,
        "shift": shift.to_dict(),
        "score_model": model.to_dict(),
    }


def _existing(out_dir: Path, params: Mapping[str, Any]) -> bool:
    """True when ``out_dir`` already holds this very pool; raises if it holds anything else."""
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder")
    if not any(out_dir.iterdir()):
        return False
    try:
        old = json.loads((out_dir / "synth.json").read_text())
    except (OSError, ValueError):
        old = None
    if old is not None and {k: old.get(k) for k in params} == dict(params):
        return True
    raise FileExistsError(
        f"{out_dir} is not empty and is not a pool made with these parameters; "
        "remove it or choose another folder"
    )


def _render_all(
    train_dir: Path, rows: pd.DataFrame, seed: int, workers: int, progress: bool
) -> None:
    items = [
        (
            int(i),
            r[0],
            tuple(int(v) for v in r[1 : 1 + len(FLAGS)]),
            float(r[-3]),
            int(r[-2]),
            int(r[-1]),
        )
        for i, r in enumerate(
            rows[[ID, *FLAGS, "appeal", "width", "height"]].itertuples(index=False)
        )
    ]
    chunk = max(1, min(32, len(items) // (workers * 4) or 1))
    tasks = [(str(train_dir), seed, items[k : k + chunk]) for k in range(0, len(items), chunk)]
    bar = _Progress(len(items), "drawing pictures") if progress else None
    try:
        if workers == 1 or len(tasks) == 1 or current_process().daemon:
            # In-process: also inside daemonic workers (e.g. Celery's), which may not fork.
            for task in tasks:
                done = _render_chunk(task)
                if bar:
                    bar.advance(done)
        else:
            with ProcessPoolExecutor(workers, mp_context=_mp_context()) as pool:
                for done in pool.map(_render_chunk, tasks):
                    if bar:
                        bar.advance(done)
    finally:
        if bar:
            bar.close()


def _mp_context() -> BaseContext:
    """fork where there is one: workers start in milliseconds and, unlike spawn/forkserver,
    need no ``if __name__ == "__main__"`` guard in the caller's script. The workers only draw
    with numpy and PIL, so the caller's threads (torch, ONNX Runtime) cannot deadlock them."""
    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


class _Progress:
    """A rich progress bar on stderr."""

    def __init__(self, total: int, what: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._progress.add_task(what, total=total)
        self._progress.start()

    def advance(self, k: int) -> None:
        self._progress.advance(self._task, k)

    def close(self) -> None:
        self._progress.stop()


def generate(
    out_dir: Path,
    n: int,
    seed: int = 0,
    shift: Shift | None = None,
    *,
    size_range: tuple[int, int] = (224, 512),
    workers: int | None = None,
    progress: bool = False,
) -> Path:
    """Write a synthetic pool to ``out_dir``; returns ``out_dir``.

    Files: ``train.csv`` (Kaggle columns), ``train/<Id>.jpg``, ``synth_truth.csv`` (per-row
    truth: ``Id`` + ``TRUTH_COLUMNS``) and ``synth.json`` (every parameter, the score model,
    the noise floor, the realised statistics). The same arguments give byte-identical files
    whatever ``workers`` is. The pool is built in a hidden sibling folder and moved into place
    at the end, so a failure leaves nothing behind; rerunning on a finished pool with the same
    parameters does nothing, and a non-empty ``out_dir`` holding anything else is an error.
    """
    out_dir = Path(out_dir).expanduser().resolve()
    shift = shift or Shift()
    model = SCORE_MODEL
    size_range = (int(size_range[0]), int(size_range[1]))
    rows = sample_rows(n, seed, shift, size_range=size_range, model=model)  # validates args
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    params = _params(n, seed, shift, size_range, model)
    if _existing(out_dir, params):
        return out_dir

    partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "train").mkdir(parents=True)
    try:
        _render_all(partial / "train", rows, seed, workers, progress)
        rows[list(COLUMNS)].to_csv(partial / "train.csv", index=False, lineterminator="\n")
        truth = rows[[ID, *TRUTH_COLUMNS]]
        truth.to_csv(
            partial / "synth_truth.csv", index=False, float_format=_CSV_FLOAT, lineterminator="\n"
        )
        # The floor from the values as written, so that it recomputes exactly from the files.
        written = pd.read_csv(partial / "synth_truth.csv")
        gap = rows[TARGET].to_numpy(np.float64) - written["noise_free"].to_numpy(np.float64)
        variance = _expected_variance(rows["signal"].to_numpy(), model.noise_sigma)
        doc = {
            **params,
            "flag_shares": shift.shares(),
            "noise_sigma": model.noise_sigma,
            "noise_floor": float(np.sqrt(np.mean(gap**2))),
            "noise_floor_expected": float(np.sqrt(variance.mean())),
            "noise_floor_definition": (
                "RMSE between noise_free (E[score | signal], synth_truth.csv) and Pawpularity "
                "(train.csv) over these rows; noise_floor_expected is sqrt(mean Var[score | "
                "signal]), the same in expectation"
            ),
            "effects": {"appeal": model.appeal_effect, **dict(model.flag_effects)},
            "realized": summarize(rows[list(COLUMNS)]),
            "files": {
                "train.csv": "Kaggle columns",
                "train/": "<Id>.jpg",
                "synth_truth.csv": "Id, " + ", ".join(TRUTH_COLUMNS),
            },
        }
        (partial / "synth.json").write_text(json.dumps(doc, indent=2) + "\n")
        _move_into_place(partial, out_dir, params)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out_dir


def _move_into_place(partial: Path, out_dir: Path, params: Mapping[str, Any]) -> None:
    try:
        if out_dir.exists() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        partial.rename(out_dir)
    except OSError:
        # Another process finished the same pool first (e.g. parallel test workers): fine.
        if not _existing(out_dir, params):
            raise
        shutil.rmtree(partial, ignore_errors=True)
