"""Advice for a better pet photo, from what can be measured in the picture.

Pure numpy + PIL, plus :mod:`pawpaw.data.image_stats` (which also needs pandas, a serving dependency
anyway); no model, no torch, so it runs in the serving container as it is.

A shelter volunteer uploads a photo and gets its Pawpularity score; :func:`advise` turns the
score and a handful of cheap measurements into concrete, friendly suggestions:

- sharpness: not ``image_stats``' Laplacian variance, which falls with darkness and low
  contrast as much as with blur (a dark photo would be called blurry), but the ratio of the
  strongest second to the strongest first derivatives of the luminance
  (``p99.5 |Laplacian| / p99.5 |gradient|``). A blurred edge of width ``s`` has a peak
  gradient ~ 1/s and a peak Laplacian ~ 1/s², so the ratio ~ 1/s, independent of exposure
  and contrast. Measured on a copy whose long side is 512 px (about what a listing
  shows), so a large photo that is soft only at 100 % is not flagged.
- exposure, contrast, resolution and aspect ratio: :func:`pawpaw.data.image_stats.measure_image`,
  the same definitions the drift monitor records (luma mean and standard deviation on 0..1,
  displayed size after EXIF rotation), plus the share of clipped highlights;
- where the detail is: the centroid and spread of gradient energy on a small copy, a cheap
  stand-in for "where is the pet" (a textured background hides the subject, then nothing is said).

Thresholds were set on scikit-image's sample photos (``chelsea``, ``astronaut``, ``coffee``,
``rocket``, ...): sharp originals measure 1.8-2.8, a Gaussian blur of sigma 1 (at 512 px)
0.66-1.2, sigma 2 below 0.7.

Score bands follow the competition's distribution (mean 38, quartiles 25/33/46, 95th pct 83).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from PIL import Image

from pawpaw.data.image_stats import measure_image
from pawpaw.model.preprocess import decode_image

__all__ = ["Advice", "PhotoMeasures", "Severity", "advise", "measure_photo"]

Severity = Literal["info", "tip", "warning"]
_SEVERITY_ORDER = {"warning": 0, "tip": 1, "info": 2}

# Working sizes: measurements must not depend on how large the upload was.
_SHARPNESS_SIDE = 512
_LAYOUT_SIDE = 128

# Thresholds (see the module docstring for how they were chosen).
_BLURRY = 0.75
_SOFT = 1.1
_NO_DETAIL_GRADIENT = 2.0  # p99.5 gradient (0-255 scale) below this: a flat picture
_DARK = 0.275  # mean luma on 0..1
_BRIGHT = 0.785
_CLIPPED_SHARE = 0.25
_LOW_CONTRAST = 0.095  # luma std on 0..1; chelsea measures 0.126, a hazy copy of it 0.063
_MIN_SIDE = 320
_MAX_ASPECT = 2.0
_OFF_CENTRE = 0.2  # centroid offset as a fraction of width/height
_SMALL_SUBJECT = 0.10  # estimated subject area as a share of the frame
_SPREAD_OUT = 0.6  # estimated subject area above this: detail everywhere, no layout advice
_CENTRAL_MASS = 0.6  # per axis: the span holding the central 60 % of the detail


@dataclass(frozen=True)
class Advice:
    """One suggestion: a stable ``code`` for programs, a ``message`` for people."""

    code: str
    message: str
    severity: Severity

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class PhotoMeasures:
    """What :func:`advise` looks at. Brightness and contrast: luma mean and std on 0..1."""

    width: int
    height: int
    brightness: float
    contrast: float
    clipped_share: float  # share of pixels at luminance >= 250
    sharpness: float | None  # None: too little detail to tell
    centroid: tuple[float, float] | None  # (x, y) in 0..1; None: detail spread evenly
    subject_share: float | None  # estimated share of the frame the subject covers

    @property
    def aspect_ratio(self) -> float:
        return max(self.width, self.height) / max(1, min(self.width, self.height))


def measure_photo(image: bytes | Image.Image) -> PhotoMeasures:
    """Measure an encoded photo (any format PIL reads) or a decoded PIL image.

    Raises ``ValueError`` when the bytes are not a readable image.
    """
    if isinstance(image, Image.Image):
        img = decode_image(image)
        stats = measure_image(img)
    else:
        stats = measure_image(image)  # raises ValueError for bytes that are not an image
        # A JPEG decodes at 1/2..1/8 scale in the DCT, never below the working size: a 12 MP
        # phone photo costs a quarter of a full decode.
        img = decode_image(image, draft_size=(_SHARPNESS_SIDE, _SHARPNESS_SIDE))
    luma = _luma(_shrunk(img, _SHARPNESS_SIDE))
    centroid, share = _layout(_luma(_shrunk(img, _LAYOUT_SIDE)))
    return PhotoMeasures(
        width=int(stats["width"]),
        height=int(stats["height"]),
        brightness=stats["brightness"],
        contrast=stats["contrast"],
        clipped_share=float((luma >= 250).mean()),
        sharpness=_sharpness(luma),
        centroid=centroid,
        subject_share=share,
    )


def advise(image: bytes | Image.Image, score: float) -> list[Advice]:
    """Advice for this photo: the score band first, then problems, most important first."""
    m = measure_photo(image)
    found = [*_photo_problems(m), *_layout_tips(m)]
    found.sort(key=lambda a: _SEVERITY_ORDER[a.severity])
    if not found and score < 46:
        found.append(
            Advice(
                "composition",
                "Technically the photo is fine. Popular photos usually show the pet's face up "
                "close with both eyes visible and in focus: get down to its eye level and fill "
                "the frame.",
                "tip",
            )
        )
    return [_score_band(score), *found]


# --- rules ----------------------------------------------------------------------------------


def _score_band(score: float) -> Advice:
    if score < 25:
        return Advice(
            "score_low",
            f"A score of {score:.0f} is in the bottom quarter of shelter photos. A few changes "
            "below can make a big difference to how many people stop at this pet.",
            "info",
        )
    if score < 46:
        return Advice(
            "score_typical",
            f"A score of {score:.0f} is typical for shelter photos (half of them score "
            "25-46). The suggestions below can lift it into the top quarter.",
            "info",
        )
    if score < 70:
        return Advice(
            "score_good",
            f"A score of {score:.0f} is better than three quarters of shelter photos. Nice work!",
            "info",
        )
    return Advice(
        "score_great",
        f"A score of {score:.0f} is among the best shelter photos. Use this one as the main "
        "picture!",
        "info",
    )


def _photo_problems(m: PhotoMeasures) -> list[Advice]:
    found: list[Advice] = []
    if m.sharpness is not None and m.sharpness < _BLURRY:
        found.append(
            Advice(
                "blurry",
                "The photo looks blurry: hold the camera steady (lean on something), tap the "
                "screen on the pet's eyes to focus, and use more light so the shutter is fast.",
                "warning",
            )
        )
    elif m.sharpness is not None and m.sharpness < _SOFT:
        found.append(
            Advice(
                "soft",
                "The photo is slightly soft. Tap to focus on the pet's eyes and hold still "
                "for a moment after pressing the shutter.",
                "tip",
            )
        )
    if m.brightness < _DARK:
        found.append(
            Advice(
                "dark",
                "The photo is too dark: move near a window or step outside in the shade, and "
                "avoid flash straight into the pet's eyes.",
                "warning",
            )
        )
    elif m.brightness > _BRIGHT or m.clipped_share > _CLIPPED_SHARE:
        found.append(
            Advice(
                "overexposed",
                "Parts of the photo are washed out: avoid direct midday sun and bright "
                "backgrounds behind the pet; open shade gives even light.",
                "warning",
            )
        )
    if m.contrast < _LOW_CONTRAST and m.brightness >= _DARK:
        found.append(
            Advice(
                "low_contrast",
                "The photo looks flat and hazy. Wipe the lens, and pick a background that "
                "differs from the pet's coat (a dark blanket for a light dog, and vice versa).",
                "tip",
            )
        )
    if min(m.width, m.height) < _MIN_SIDE:
        found.append(
            Advice(
                "low_resolution",
                f"The photo is only {m.width}x{m.height} pixels and will look pixelated. "
                "Upload the original from the camera, not a thumbnail or a screenshot.",
                "warning",
            )
        )
    if m.aspect_ratio > _MAX_ASPECT:
        shape = "wide" if m.width > m.height else "tall"
        found.append(
            Advice(
                "extreme_aspect",
                f"The photo is very {shape} ({m.aspect_ratio:.1f}:1); listings crop it to a "
                "square-ish thumbnail. Crop closer to 4:3 or 1:1 around the pet.",
                "tip",
            )
        )
    return found


def _layout_tips(m: PhotoMeasures) -> list[Advice]:
    found: list[Advice] = []
    if m.subject_share is not None and m.subject_share < _SMALL_SUBJECT:
        found.append(
            Advice(
                "subject_small",
                "The pet seems small in the frame. Move closer (or crop) so it fills most "
                "of the picture.",
                "tip",
            )
        )
    if m.centroid is not None:
        dx, dy = m.centroid[0] - 0.5, m.centroid[1] - 0.5
        if max(abs(dx), abs(dy)) > _OFF_CENTRE:
            side = (
                ("right" if dx > 0 else "left")
                if abs(dx) >= abs(dy)
                else ("bottom" if dy > 0 else "top")
            )
            found.append(
                Advice(
                    "off_centre",
                    f"The pet seems to sit near the {side} edge. Centre it, or crop so its "
                    "face is near the middle.",
                    "tip",
                )
            )
    return found


# --- measurements ---------------------------------------------------------------------------


def _shrunk(img: Image.Image, side: int) -> Image.Image:
    if max(img.size) <= side:
        return img
    small = img.copy()
    small.thumbnail((side, side), Image.Resampling.BILINEAR)
    return small


def _luma(img: Image.Image) -> np.ndarray:
    """ITU-R 601 luminance as float32 (H, W) on 0..255."""
    return np.asarray(img.convert("L"), dtype=np.float32)


def _sharpness(luma: np.ndarray) -> float | None:
    if min(luma.shape) < 3:
        return None
    c = luma[1:-1, 1:-1]
    lap = np.abs(luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4 * c)
    gx = (luma[1:-1, 2:] - luma[1:-1, :-2]) / 2
    gy = (luma[2:, 1:-1] - luma[:-2, 1:-1]) / 2
    grad = np.percentile(np.hypot(gx, gy), 99.5)
    if grad < _NO_DETAIL_GRADIENT:
        return None
    return float(np.percentile(lap, 99.5) / grad)


def _layout(luma: np.ndarray) -> tuple[tuple[float, float] | None, float | None]:
    """Centroid and extent of gradient energy; (None, None) when it is spread evenly."""
    h, w = luma.shape
    if h < 8 or w < 8:
        return None, None
    gx = np.abs(np.diff(luma, axis=1))[:-1, :]
    gy = np.abs(np.diff(luma, axis=0))[:, :-1]
    energy = gx + gy  # (h-1, w-1)
    total = float(energy.sum())
    if total <= 0:
        return None, None
    cols = energy.sum(axis=0) / total
    rows = energy.sum(axis=1) / total
    x0, x1 = _central_span(cols, _CENTRAL_MASS)
    y0, y1 = _central_span(rows, _CENTRAL_MASS)
    # Detail spread evenly over an object spans it in proportion to the mass kept per axis.
    share = min(1.0, (x1 - x0) * (y1 - y0) / _CENTRAL_MASS**2)
    # Detail over the whole frame (a textured background) says nothing about the pet.
    if share > _SPREAD_OUT:
        return None, None
    cx = float((cols * (np.arange(cols.size) + 0.5)).sum() / cols.size)
    cy = float((rows * (np.arange(rows.size) + 0.5)).sum() / rows.size)
    return (cx, cy), float(share)


def _central_span(weights: np.ndarray, mass: float) -> tuple[float, float]:
    """The interval (as fractions 0..1) holding the central ``mass`` of a 1-D distribution."""
    cdf = np.cumsum(weights)
    lo = (1 - mass) / 2
    start = int(np.searchsorted(cdf, lo))
    stop = int(np.searchsorted(cdf, 1 - lo)) + 1
    return start / weights.size, min(stop, weights.size) / weights.size
