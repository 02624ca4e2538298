"""Writing a synthetic PetFinder pool: Kaggle-format files whose score is driven by what is visible.

:func:`generate` samples the rows (:func:`pawpaw.synth.scores.sample_rows`), draws one JPEG per
row in worker processes (:func:`pawpaw.synth.render.render_image`, seeded by ``(seed, row)``)
and writes ``train.csv``, ``train/<Id>.jpg``, the per-row truth (``synth_truth.csv``) and
``synth.json``: every parameter, the score model, the realised statistics and the pool's noise
floor (:func:`pawpaw.synth.truth.noise_floor`), so anyone can recompute it from the files.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import current_process, get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pawpaw.data.kaggle import summarize
from pawpaw.progress import Progress
from pawpaw.schema import COLUMNS, FLAGS, ID, TARGET
from pawpaw.synth.render import render_image
from pawpaw.synth.scores import (
    SCORE_MODEL,
    TRUTH_COLUMNS,
    ScoreModel,
    Shift,
    expected_variance,
    sample_rows,
)
from pawpaw.synth.truth import NOISE_FREE, SYNTH_FILE, TRUTH_FILE, noise_floor

__all__ = ["GENERATOR_VERSION", "generate"]

# Bump when the same (seed, n, shift, size_range) would give different files: a pool on disk
# made by another version is then refused (FileExistsError) instead of silently reused.
GENERATOR_VERSION = 1

_JPEG_QUALITY = 90
_CSV_FLOAT = "%.6f"


def _render_chunk(args: tuple[str, int, list[tuple[Any, ...]]]) -> int:
    """Worker: draw and write the JPEGs of a chunk of rows; returns how many."""
    train_dir, seed, rows = args
    for index, row_id, flag_values, appeal, w, h in rows:
        flags = dict(zip(FLAGS, flag_values, strict=True))
        img = render_image(flags, appeal, (w, h), seed=seed, index=index)
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
        old = json.loads((out_dir / SYNTH_FILE).read_text())
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
    bar = Progress(len(items), "drawing pictures", enabled=progress, tag="synth", unit="img")
    if workers == 1 or len(tasks) == 1 or current_process().daemon:
        # In-process: also inside daemonic workers (e.g. Celery's), which may not fork.
        for task in tasks:
            bar.advance(_render_chunk(task))
    else:
        with ProcessPoolExecutor(workers, mp_context=_mp_context()) as pool:
            for done in pool.map(_render_chunk, tasks):
                bar.advance(done)


def _mp_context() -> BaseContext:
    """fork where there is one: workers start in milliseconds and, unlike spawn/forkserver,
    need no ``if __name__ == "__main__"`` guard in the caller's script. The workers only draw
    with numpy and PIL, so the caller's threads (torch, ONNX Runtime) cannot deadlock them."""
    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


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
            partial / TRUTH_FILE, index=False, float_format=_CSV_FLOAT, lineterminator="\n"
        )
        # The floor from the values as written, so that it recomputes exactly from the files.
        written = pd.read_csv(partial / TRUTH_FILE)
        floor = noise_floor(
            rows[TARGET].to_numpy(np.float64), written[NOISE_FREE].to_numpy(np.float64)
        )
        variance = expected_variance(rows["signal"].to_numpy(), model.noise_sigma)
        doc = {
            **params,
            "flag_shares": shift.shares(),
            "noise_sigma": model.noise_sigma,
            "noise_floor": floor,
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
                TRUTH_FILE: f"{ID}, " + ", ".join(TRUTH_COLUMNS),
            },
        }
        (partial / SYNTH_FILE).write_text(json.dumps(doc, indent=2) + "\n")
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
