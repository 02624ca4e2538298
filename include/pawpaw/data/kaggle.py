"""Read a PetFinder Pawpularity data set (Kaggle format) into :class:`~pawpaw.data.labeled.LabeledImages`.

Accepted layouts, as a folder or a ``.zip``::

    train.csv | data.csv       Id, the twelve flags, Pawpularity
    train/<Id>.jpg             one image per row (JPEG, PNG or WebP bytes, whatever the extension)

In a zip the CSV may sit at the top level or inside one folder (``petfinder/train.csv``); the
images are then under that folder too. A path to the CSV file itself also works.

Everything is checked before anything is returned, and each problem raises :class:`DataError`
naming the file, the row (1-based CSV line and Id) and what is wrong: missing columns, flags
other than 0/1, scores that are not integers in 1..100, bad or duplicate Ids, and (with
``check_images``) missing images and images that fail :func:`pawpaw.data.images.check_image`
(the project's one image check: JPEG, PNG or WebP, decoded whole). Images are checked in a
thread pool (PIL decodes without the GIL), so thousands take seconds.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import threading
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pawpaw.data.images import ImageError, check_image
from pawpaw.data.labeled import LabeledImages
from pawpaw.data.sampling import flag_shares
from pawpaw.schema import COLUMNS, FLAGS, ID, TARGET

__all__ = ["CSV_NAMES", "DataError", "read_dataset", "summarize"]

CSV_NAMES: tuple[str, ...] = ("train.csv", "data.csv")  # in order of preference
_ID_RE = re.compile(r"[0-9a-fA-F]{32}")
_SHOW = 5  # problems listed in one error message


class DataError(ValueError):
    """The data set is not usable; the message names the file, the row and the problem."""


# --- where the files are ------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where a data set's CSV and images live: a folder, or a prefix inside a zip."""

    path: Path  # the folder or the .zip
    csv_name: str  # relative to path (zip member name or folder-relative)
    prefix: str  # "" or "sub/" (zip only): images under prefix + "train/"

    @property
    def is_zip(self) -> bool:
        return self.path.is_file()

    def where(self, name: str) -> str:
        """Human-readable location of a file of the data set."""
        return f"{self.path}!{name}" if self.is_zip else str(self.path / name)

    def image_name(self, image_id: str) -> str:
        return f"{self.prefix}train/{image_id}.jpg"


def _locate(path: Path) -> _Layout:
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() == ".csv":
        return _Layout(path.parent, path.name, "")
    if path.is_dir():
        for name in CSV_NAMES:
            if (path / name).is_file():
                return _Layout(path, name, "")
        raise DataError(f"{path}: no {' or '.join(CSV_NAMES)} in this folder")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a folder, a .csv or a .zip file")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    for name in CSV_NAMES:  # top level first
        if name in names:
            return _Layout(path, name, "")
    for name in CSV_NAMES:
        nested = sorted(n for n in names if n.count("/") == 1 and n.endswith("/" + name))
        if len(nested) == 1:
            return _Layout(path, nested[0], nested[0][: -len(name)])
        if len(nested) > 1:
            raise DataError(f"{path}: several {name} in the zip ({', '.join(nested)}); keep one")
    raise DataError(
        f"{path}: no {' or '.join(CSV_NAMES)} at the top of the zip or in one folder inside it"
    )


class _FolderImages:
    """``load`` of a folder data set: Id -> bytes of ``train/<Id>.jpg``. Picklable."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, image_id: str) -> bytes:
        return (self.root / "train" / f"{image_id}.jpg").read_bytes()


class _ZipImages:
    """``load`` of a zipped data set. One open ZipFile per thread (no shared file position);
    picklable (handles are reopened after unpickling)."""

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout
        self._local = threading.local()

    def __call__(self, image_id: str) -> bytes:
        zf = getattr(self._local, "zf", None)
        if zf is None:
            zf = self._local.zf = zipfile.ZipFile(self.layout.path)
        name = self.layout.image_name(image_id)
        try:
            return zf.read(name)
        except KeyError:
            raise FileNotFoundError(f"{self.layout.where(name)}: not in the zip") from None

    def __getstate__(self) -> dict[str, Any]:
        return {"layout": self.layout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.layout = state["layout"]
        self._local = threading.local()


def _names(layout: _Layout) -> set[str]:
    """The image file names present, as ``image_name`` spells them."""
    if layout.is_zip:
        with zipfile.ZipFile(layout.path) as zf:
            return set(zf.namelist())
    folder = layout.path / "train"
    if not folder.is_dir():
        return set()
    return {f"train/{entry.name}" for entry in os.scandir(folder) if entry.is_file()}


# --- the table ------------------------------------------------------------------------------


def _read_text(layout: _Layout) -> str:
    where = layout.where(layout.csv_name)
    try:
        if layout.is_zip:
            with zipfile.ZipFile(layout.path) as zf:
                raw = zf.read(layout.csv_name)
        else:
            raw = (layout.path / layout.csv_name).read_bytes()
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read ({exc})") from None


def _parse(text: str, where: str) -> pd.DataFrame:
    """The CSV as strings, columns checked; raises DataError naming the file."""
    header = next(csv.reader(io.StringIO(text)), None)
    if not header:
        raise DataError(f"{where}: empty file (expected the header {', '.join(COLUMNS)})")
    header = [h.strip() for h in header]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataError(f"{where}: line 1: column(s) {', '.join(repeated)} appear more than once")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataError(
            f"{where}: line 1: missing required column(s) {', '.join(missing)} "
            f"(expected {', '.join(COLUMNS)})"
        )
    try:
        # Strings throughout: values are validated here, not guessed by pandas.
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"{where}: not a valid CSV: {str(exc).strip()}") from None
    frame.columns = header
    if frame.empty:
        raise DataError(f"{where}: no rows after the header")
    return frame


def _problems_in_values(frame: pd.DataFrame) -> list[str]:
    """Row problems, each ``line N (Id X): what``; lines are 1-based CSV lines (header = 1)."""
    line = np.arange(len(frame)) + 2
    ids = frame[ID].str.strip()
    problems: list[tuple[int, str]] = []

    def label(i: int) -> str:
        return f"line {line[i]} (Id {ids.iloc[i]!r})"

    bad_id = ~ids.map(lambda v: bool(_ID_RE.fullmatch(v))).to_numpy()
    problems += [(i, f"{label(i)}: Id is not 32 hex characters") for i in np.flatnonzero(bad_id)]
    dup = ids.duplicated(keep=False).to_numpy() & ~bad_id
    for image_id, rows in pd.Series(np.flatnonzero(dup)).groupby(ids[dup].to_numpy()):
        first, *others = rows.tolist()
        again = ", ".join(str(line[i]) for i in others)
        problems.append(
            (others[0], f"line {again}: duplicate Id {image_id!r} (first on line {line[first]})")
        )
    for column in FLAGS:
        value = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy()
        for i in np.flatnonzero(~np.isin(value, (0, 1))):
            problems.append((i, f"{label(i)}: {column} = {frame[column].iloc[i]!r}, not 0 or 1"))
    score = pd.to_numeric(frame[TARGET].str.strip(), errors="coerce").to_numpy(dtype=float)
    ok = np.isfinite(score) & (score == np.round(score)) & (score >= 1) & (score <= 100)
    for i in np.flatnonzero(~ok):
        value = frame[TARGET].iloc[i]
        problems.append((i, f"{label(i)}: {TARGET} = {value!r}, not an integer in 1..100"))
    return [text for _, text in sorted(problems, key=lambda p: p[0])]


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({ID: frame[ID].str.strip()})
    for column in FLAGS:
        out[column] = pd.to_numeric(frame[column].str.strip()).astype(np.int64)
    out[TARGET] = pd.to_numeric(frame[TARGET].str.strip()).astype(np.int64)
    return out


def _raise(where: str, what: str, problems: list[str]) -> None:
    if problems:
        shown = "; ".join(problems[:_SHOW])
        more = f"; and {len(problems) - _SHOW} more" if len(problems) > _SHOW else ""
        raise DataError(f"{where}: {len(problems)} {what}: {shown}{more}")


# --- the images -----------------------------------------------------------------------------


def _check_images(
    layout: _Layout, frame: pd.DataFrame, load: Callable[[str], bytes]
) -> dict[str, str]:
    """Check every row's image; returns Id -> "sha256:<hex>" of its bytes."""
    present = _names(layout)
    ids = frame[ID].tolist()
    lines = {image_id: i + 2 for i, image_id in enumerate(ids)}

    def where(image_id: str) -> str:
        return f"{layout.where(layout.image_name(image_id))} (line {lines[image_id]})"

    missing = [i for i in ids if layout.image_name(i) not in present]
    if missing:
        if not layout.is_zip and not (layout.path / "train").is_dir():
            raise DataError(f"{layout.path / 'train'}: no such folder (the images go there)")
        _raise(
            layout.where(layout.prefix + "train/"),
            "image(s) missing",
            [f"{where(i)}: no such file" for i in missing],
        )

    def check(image_id: str) -> tuple[str, str, str | None]:
        try:
            raw = load(image_id)
        except OSError as exc:
            return image_id, "", f"cannot be read ({exc})"
        key = "sha256:" + hashlib.sha256(raw).hexdigest()
        try:
            check_image(raw)
        except ImageError as exc:
            return image_id, key, exc.problem
        return image_id, key, None

    keys: dict[str, str] = {}
    bad: list[str] = []
    with ThreadPoolExecutor(max_workers=min(16, 2 * (os.cpu_count() or 1))) as pool:
        for image_id, key, problem in pool.map(check, ids):  # PIL decodes without the GIL
            if problem:
                bad.append(f"{where(image_id)}: {problem}")
            keys[image_id] = key
    _raise(layout.where(layout.prefix + "train/"), "bad image(s)", bad)
    return keys


# --- public -----------------------------------------------------------------------------------


def read_dataset(path: Path, *, check_images: bool = True) -> LabeledImages:
    """The data set at ``path`` (folder, ``.zip`` or the CSV itself), fully validated.

    ``frame``: exactly ``COLUMNS``, flags and score as int64, in file order. ``load(Id)``:
    the image's bytes. ``content_keys``: ``"sha256:<hex>"`` of each image when
    ``check_images`` (the bytes were read anyway), else empty. ``source``: ``str(path)``
    resolved (for a CSV path, its folder). Raises :class:`DataError` on any problem.
    """
    path = Path(path).expanduser().resolve()
    layout = _locate(path)
    where = layout.where(layout.csv_name)
    raw = _parse(_read_text(layout), where)
    _raise(where, "bad row(s)", _problems_in_values(raw))
    frame = _typed(raw)
    load: Callable[[str], bytes] = (
        _ZipImages(layout) if layout.is_zip else _FolderImages(layout.path)
    )
    keys = _check_images(layout, frame, load) if check_images else {}
    return LabeledImages(frame=frame, load=load, content_keys=keys, source=str(layout.path))


def summarize(data: LabeledImages | pd.DataFrame) -> dict[str, Any]:
    """Rows, each flag's share, and score statistics (mean, std, min, quartiles, 95th
    percentile, max, share exactly 100) of a data set or of its frame."""
    frame = data.frame if isinstance(data, LabeledImages) else data
    if frame.empty:
        return {"rows": 0, "flag_shares": flag_shares(frame), "score": {}}
    y = frame[TARGET].to_numpy(dtype=np.float64)
    q25, median, q75, p95 = np.percentile(y, [25, 50, 75, 95])
    return {
        "rows": len(frame),
        "flag_shares": flag_shares(frame),
        "score": {
            "mean": float(y.mean()),
            "std": float(y.std()),
            "min": float(y.min()),
            "q25": float(q25),
            "median": float(median),
            "q75": float(q75),
            "p95": float(p95),
            "max": float(y.max()),
            "share_100": float((y == 100).mean()),
        },
    }
