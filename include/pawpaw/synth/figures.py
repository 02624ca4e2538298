"""The figures of a synthetic photo: the backdrop, the pets, a person, an occluder, motion lines.

Each function draws one element with the random generator it is given (the element's own
stream, chosen by :mod:`pawpaw.synth.render`, which composes the elements into a picture), so
toggling one flag changes only the pixels of that element.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["FURS", "draw_human", "draw_occluder", "draw_pet", "draw_speed_lines", "scene"]

FURS = (
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


def _muted(rng: np.random.Generator, value: tuple[float, float]) -> tuple[int, int, int]:
    """A dull colour: low saturation, medium value; appeal's warm glow stays distinguishable."""
    import colorsys

    h, s, v = rng.random(), rng.uniform(0.08, 0.4), rng.uniform(*value)
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def _vertical_gradient(w: int, h: int, top: Sequence[int], bottom: Sequence[int]) -> np.ndarray:
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]  # (h, 1, 1)
    col = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)  # (h, 1, 3)
    return np.broadcast_to(col, (h, w, 3))


def scene(w: int, h: int, focus: bool, rng: np.random.Generator) -> Image.Image:
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


def draw_pet(
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


def draw_human(img: Image.Image, rng: np.random.Generator) -> None:
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


def draw_occluder(
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


def draw_speed_lines(
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
