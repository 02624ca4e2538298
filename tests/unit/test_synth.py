"""The synthetic generator: Kaggle-like statistics, visible flags and appeal, a recomputable noise
floor, determinism, shifts, and the `pawpaw synth` command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter
from scipy.stats import norm
from typer.testing import CliRunner

from pawpaw import synth
from pawpaw.cli import app
from pawpaw.data.kaggle import read_dataset
from pawpaw.schema import COLUMNS, FLAGS, ID, TARGET
from pawpaw.synth import render, writer

pytestmark = pytest.mark.unit

# DATA_FACTS.md: the Kaggle train.csv.
KAGGLE = {
    "mean": 38.04,
    "std": 20.59,
    "q25": 25,
    "median": 33,
    "q75": 46,
    "p95": 83,
    "at100": 0.029,
}


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """20k rows without pictures: enough for tight statistics, well under a second."""
    return synth.sample_rows(20_000, seed=1)


# --- the table ----------------------------------------------------------------------------


def test_flag_shares_match_kaggle(rows: pd.DataFrame) -> None:
    for flag, share in synth.FLAG_SHARES.items():
        tolerance = max(0.01, 4 * np.sqrt(share * (1 - share) / len(rows)))
        assert rows[flag].mean() == pytest.approx(share, abs=tolerance), flag
        assert set(rows[flag].unique()) <= {0, 1}
    # A pet whose eyes show shows its face.
    assert not ((rows["Eyes"] == 1) & (rows["Face"] == 0)).any()


def test_score_distribution_matches_kaggle(rows: pd.DataFrame) -> None:
    y = rows[TARGET]
    assert y.dtype == np.int64
    assert (y.min(), y.max()) == (1, 100)
    assert y.mean() == pytest.approx(KAGGLE["mean"], abs=1.0)
    assert y.std() == pytest.approx(KAGGLE["std"], abs=1.0)
    q25, median, q75, p95 = np.percentile(y, [25, 50, 75, 95])
    # Gaussian noise of sigma 16 alone spreads the quartiles 21.6 apart (Kaggle: 21), so the
    # quartiles can only come near the real ones: within 3 points.
    assert q25 == pytest.approx(KAGGLE["q25"], abs=3)
    assert median == pytest.approx(KAGGLE["median"], abs=3)
    assert q75 == pytest.approx(KAGGLE["q75"], abs=3)
    assert p95 == pytest.approx(KAGGLE["p95"], abs=3)
    assert (y == 100).mean() == pytest.approx(KAGGLE["at100"], abs=0.006)  # the pile-up at the cap


def test_flags_alone_barely_predict_the_score(rows: pd.DataFrame) -> None:
    # As in the real data (a linear model on the flags: RMSE 20.60 vs 20.59 for the mean).
    x = np.column_stack([np.ones(len(rows)), rows[list(FLAGS)].to_numpy(float)])
    y = rows[TARGET].to_numpy(float)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    r2 = 1 - np.mean((y - x @ coef) ** 2) / y.var()
    assert r2 < 0.03


def test_score_is_signal_plus_noise_rounded_and_clipped(rows: pd.DataFrame) -> None:
    model = synth.SCORE_MODEL
    signal = model.base + model.appeal_effect * rows["appeal"]
    for flag in FLAGS:
        signal = signal + model.flag_effects[flag] * rows[flag]
    np.testing.assert_allclose(rows["signal"], signal)
    expected = np.clip(np.floor(rows["signal"] + rows["noise"] + 0.5), 1, 100)
    np.testing.assert_array_equal(rows[TARGET], expected)
    assert rows["noise"].std() == pytest.approx(model.noise_sigma, rel=0.03)
    # The appeal (not a flag) carries most of the signal.
    assert np.corrcoef(rows["appeal"], rows["signal"])[0, 1] > 0.95


def test_sizes_vary_in_both_orientations(rows: pd.DataFrame) -> None:
    w, h = rows["width"], rows["height"]
    assert w.between(224, 512).all() and h.between(224, 512).all()
    assert (w > h).mean() > 0.4 and (h > w).mean() > 0.4


def test_shift_moves_what_it_names_and_nothing_else(rows: pd.DataFrame) -> None:
    blurred = synth.sample_rows(20_000, seed=1, shift=synth.Shift({"Blur": 0.5}))
    assert blurred["Blur"].mean() == pytest.approx(0.5, abs=0.015)
    # Rows blurred before stay blurred; the other flags, appeal and noise do not move.
    assert (blurred["Blur"] >= rows["Blur"]).all()
    others = [f for f in FLAGS if f != "Blur"]
    pd.testing.assert_frame_equal(
        blurred[[ID, *others, "appeal", "noise"]], rows[[ID, *others, "appeal", "noise"]]
    )

    duller = synth.sample_rows(20_000, seed=1, shift=synth.Shift(appeal_shift=-1.0))
    assert (duller["appeal"] <= rows["appeal"]).all()
    assert duller[TARGET].mean() < rows[TARGET].mean() - 3
    assert (duller[TARGET] == 100).mean() < 0.5 * (rows[TARGET] == 100).mean()


def test_shift_parse() -> None:
    shift = synth.Shift.parse(["Blur=0.5", "subject_focus=0.1", "appeal=-1", "human = 0.3"])
    assert shift == synth.Shift({"Blur": 0.5, "Subject Focus": 0.1, "Human": 0.3}, -1.0)
    assert shift.shares()["Blur"] == 0.5 and shift.shares()["Eyes"] == synth.FLAG_SHARES["Eyes"]
    assert synth.Shift.parse([]) == synth.Shift()


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["Fur=0.2"], "unknown name 'Fur'"),
        (["Blur"], "expected NAME=VALUE"),
        (["Blur=lots"], "expected NAME=VALUE"),
        (["Blur=1.5"], "share of 'Blur' must be in 0..1"),
        (["appeal=9"], "appeal must be within -5..5"),
        (["Face=0.5"], "Eyes share 0.773 exceeds Face share 0.5"),
    ],
)
def test_shift_parse_rejects(items: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synth.Shift.parse(items)


def test_expected_score_is_the_mean_of_the_score_distribution() -> None:
    signal = np.array([-40.0, 0.0, 1.0, 37.3, 99.5, 100.0, 180.0])
    sigma = 16.0
    k = np.arange(1, 101)
    # P(score = k): the normal mass between k - 0.5 and k + 0.5, ends open.
    upper = np.where(k == 100, np.inf, k + 0.5)
    lower = np.where(k == 1, -np.inf, k - 0.5)
    p = norm.cdf((upper - signal[:, None]) / sigma) - norm.cdf((lower - signal[:, None]) / sigma)
    np.testing.assert_allclose(synth.expected_score(signal, sigma), p @ k, atol=1e-9)


# --- the pictures -------------------------------------------------------------------------

BASE = {**dict.fromkeys(FLAGS, 0), "Face": 1, "Eyes": 1, "Near": 1}
SIZE = (160, 128)


def _pair(index: int, **on: int) -> tuple[np.ndarray, np.ndarray, render._Layout, render._Layout]:
    off_img, off = render._render(BASE, 0.0, SIZE, 3, index)
    on_img, on_layout = render._render({**BASE, **on}, 0.0, SIZE, 3, index)
    return np.asarray(off_img, float), np.asarray(on_img, float), off, on_layout


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b).max(axis=2) > 30  # (h, w): visibly different pixels


def _sharpness(img: np.ndarray) -> float:
    grey = Image.fromarray(img.astype(np.uint8)).convert("L")
    return float(np.asarray(grey.filter(ImageFilter.FIND_EDGES), float).var())


def _crop(mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)]


@pytest.mark.parametrize("flag", [f for f in FLAGS if f not in ("Face", "Eyes", "Near")])
@pytest.mark.parametrize("index", [0, 1, 2])
def test_every_flag_changes_the_picture(flag: str, index: int) -> None:
    off, on, _, _ = _pair(index, **{flag: 1})
    assert _changed(off, on).mean() > 0.005, flag


@pytest.mark.parametrize("index", [0, 1, 2])
def test_face_eyes_near_change_the_picture(index: int) -> None:
    base, _, layout, _ = _pair(index)
    closed = np.asarray(render._render({**BASE, "Eyes": 0}, 0.0, SIZE, 3, index)[0], float)
    away = np.asarray(render._render({**BASE, "Eyes": 0, "Face": 0}, 0.0, SIZE, 3, index)[0], float)
    _, far = render._render({**BASE, "Near": 0}, 0.0, SIZE, 3, index)
    # Eyes: a change inside the pet's head only.
    eyes = _changed(base, closed)
    assert eyes.mean() > 0.003
    assert _crop(eyes, layout.subject).sum() == eyes.sum()
    assert _changed(closed, away).mean() > 0.003  # a face vs the back of the head
    # Near: a close-up pet is several times larger in the frame.
    area = lambda b: (min(b[2], SIZE[0]) - max(b[0], 0)) * (min(b[3], SIZE[1]) - max(b[1], 0))  # noqa: E731
    assert area(layout.subject) > 3 * area(far.subject)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_blur_is_blurred(index: int) -> None:
    off, on, _, _ = _pair(index, Blur=1)
    assert _sharpness(on) < 0.3 * _sharpness(off)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_collage_is_a_grid(index: int) -> None:
    _, on, _, layout = _pair(index, Collage=1)
    assert layout.grid is not None and layout.grid[0] * layout.grid[1] >= 2
    assert layout.grid_lines
    for x0, y0, x1, y1 in layout.grid_lines:  # light separator lines through the picture
        line = on[y0:y1, x0] if x0 == x1 else on[y0, x0:x1]
        assert (line.min(axis=1) > 200).mean() > 0.9


@pytest.mark.parametrize("index", [0, 1, 2])
def test_info_is_a_banner_with_text(index: int) -> None:
    off, on, _, layout = _pair(index, Info=1)
    assert layout.banner is not None
    banner = _crop(np.abs(on - off).max(axis=2), layout.banner)
    assert (banner > 0).mean() > 0.6  # the banner covers what was there
    x0, y0, x1, y1 = layout.banner
    region = on[y0:y1, x0:x1].reshape(-1, 3)
    fill = np.median(region, axis=0)
    ink = np.abs(region - fill).max(axis=1) > 60  # text pixels, unlike the banner colour
    assert 0.02 < ink.mean() < 0.5


@pytest.mark.parametrize("index", [0, 1, 2])
def test_group_occlusion_human_action_focus(index: int) -> None:
    base, _, layout, group_layout = _pair(index, Group=1)
    assert group_layout.pets >= 2 and layout.pets == 1
    # Occlusion covers a good part of the main pet.
    _, occluded, _, occ_layout = _pair(index, Occlusion=1)
    assert occ_layout.occluder is not None
    assert _crop(_changed(base, occluded), layout.subject).mean() > 0.25
    # A person and motion streaks are large additions.
    assert _changed(base, _pair(index, Human=1)[1]).mean() > 0.05
    assert _changed(base, _pair(index, Action=1)[1]).mean() > 0.05
    # Subject Focus: a plain backdrop, no clutter: hardly an edge outside the pet.
    focus_img, focus = render._render({**BASE, "Subject Focus": 1}, 0.0, SIZE, 3, index)

    def background_edges(img: Image.Image, subject: tuple[int, int, int, int]) -> float:
        edges = np.asarray(img.convert("L").filter(ImageFilter.FIND_EDGES), float) > 8
        edges = np.pad(edges[1:-1, 1:-1], 1)  # the filter marks the frame's border
        x0, y0, x1, y1 = subject
        edges[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = False
        return float(edges.mean())

    room = render._render(BASE, 0.0, SIZE, 3, index)[0]
    assert background_edges(focus_img, focus.subject) < 0.002
    assert background_edges(room, layout.subject) > 0.01


def test_accessory_adds_a_coloured_collar() -> None:
    off, on, layout, _ = _pair(0, Accessory=1)
    changed = _changed(off, on)
    assert changed.mean() > 0.005
    assert _crop(changed, layout.subject).sum() == changed.sum()


def test_appeal_is_warm_bright_colourful_light() -> None:
    def stats(appeal: float) -> tuple[float, float, float]:
        img = np.asarray(render._render(BASE, appeal, SIZE, 3, 0)[0], float)
        saturation = (img.max(axis=2) - img.min(axis=2)).mean()
        return img[..., 0].mean() - img[..., 2].mean(), img.mean(), saturation

    low, mid, high = stats(0.0), stats(0.5), stats(1.0)
    for k in range(3):  # warmth, brightness, colourfulness all grow with appeal
        assert low[k] < mid[k] < high[k]
    assert high[0] - low[0] > 40  # red minus blue: a strong, global cue


def test_render_image_is_pure() -> None:
    a = synth.render_image(BASE, 0.3, (90, 70), seed=1, index=4)
    b = synth.render_image(BASE, 0.3, (90, 70), seed=1, index=4)
    assert a.size == (90, 70) and a.mode == "RGB"
    assert a.tobytes() == b.tobytes()
    with pytest.raises(ValueError, match="flags missing"):
        synth.render_image({"Blur": 1}, 0.0, (90, 70), seed=1, index=4)


# --- the files ----------------------------------------------------------------------------


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    kwargs = {"n": 16, "seed": 5, "size_range": (48, 80), "shift": synth.Shift({"Collage": 0.3})}
    one = _files(synth.generate(tmp_path / "a", workers=1, **kwargs))
    two = _files(synth.generate(tmp_path / "b", workers=2, **kwargs))
    assert one == two
    assert {"train.csv", "synth.json", "synth_truth.csv"} <= set(one)
    assert sum(name.startswith("train/") for name in one) == 16
    other = _files(synth.generate(tmp_path / "c", n=16, seed=6, size_range=(48, 80)))
    assert other["train.csv"] != one["train.csv"]


def test_pool_files(synthetic_pool: Path) -> None:
    frame = pd.read_csv(synthetic_pool / "train.csv")
    truth = pd.read_csv(synthetic_pool / "synth_truth.csv")
    doc = json.loads((synthetic_pool / "synth.json").read_text())

    assert list(frame.columns) == list(COLUMNS)
    assert list(truth.columns) == [ID, *synth.TRUTH_COLUMNS]
    assert len(frame) == 240 and frame[ID].is_unique
    assert frame[ID].str.fullmatch(r"[0-9a-f]{32}").all()
    for image_id, w, h in truth[[ID, "width", "height"]].head(20).itertuples(index=False):
        with Image.open(synthetic_pool / "train" / f"{image_id}.jpg") as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (w, h))
    # Every parameter and the true effects are written down.
    assert (doc["seed"], doc["n"], doc["size_range"]) == (7, 240, [96, 160])
    assert doc["shift"] == {"flag_shares": {}, "appeal_shift": 0.0}
    assert doc["noise_sigma"] == synth.SCORE_MODEL.noise_sigma
    assert set(doc["effects"]) == {"appeal", *FLAGS}
    assert doc["score_model"]["base"] == synth.SCORE_MODEL.base
    assert doc["realized"]["rows"] == 240
    assert len(read_dataset(synthetic_pool)) == 240


def test_noise_floor_recomputes_from_the_files(synthetic_pool: Path) -> None:
    frame = pd.read_csv(synthetic_pool / "train.csv")
    truth = pd.read_csv(synthetic_pool / "synth_truth.csv")
    doc = json.loads((synthetic_pool / "synth.json").read_text())
    y = frame[TARGET].to_numpy(float)

    rmse = float(np.sqrt(np.mean((y - truth["noise_free"]) ** 2)))
    assert doc["noise_floor"] == pytest.approx(rmse, abs=1e-9)
    # noise_free is E[score | signal]: recompute it from the signal, the independent way.
    k = np.arange(1, 101)
    s, sigma = truth["signal"].to_numpy()[:, None], doc["noise_sigma"]
    upper = np.where(k == 100, np.inf, k + 0.5)
    lower = np.where(k == 1, -np.inf, k - 0.5)
    expected = (norm.cdf((upper - s) / sigma) - norm.cdf((lower - s) / sigma)) @ k
    np.testing.assert_allclose(truth["noise_free"], expected, atol=1e-5)
    # And the score is that signal plus the written noise.
    np.testing.assert_array_equal(
        y, np.clip(np.floor(truth["signal"] + truth["noise"] + 0.5), 1, 100)
    )
    assert 13.0 < doc["noise_floor"] < 17.0
    assert 14.5 < doc["noise_floor_expected"] < 16.0


def test_shifted_pool_is_shifted(synthetic_pool: Path, shifted_pool: Path) -> None:
    base = pd.read_csv(synthetic_pool / "train.csv")
    shifted = pd.read_csv(shifted_pool / "train.csv")
    doc = json.loads((shifted_pool / "synth.json").read_text())
    assert doc["shift"] == {"flag_shares": {"Blur": 0.6}, "appeal_shift": -1.0}
    assert shifted["Blur"].mean() == pytest.approx(0.6, abs=0.1)
    assert shifted[TARGET].mean() < base[TARGET].mean() - 2
    assert not set(shifted[ID]) & set(base[ID])  # pools can be mixed


def test_appeal_is_learnable_from_cheap_pixels(synthetic_pool: Path) -> None:
    """Ridge on 8x8 colour thumbnails + an edge measure already explains most of the signal."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_predict

    frame = pd.read_csv(synthetic_pool / "train.csv")
    truth = pd.read_csv(synthetic_pool / "synth_truth.csv")

    def features(image_id: str) -> np.ndarray:
        with Image.open(synthetic_pool / "train" / f"{image_id}.jpg") as img:
            thumb = np.asarray(img.convert("RGB").resize((8, 8), Image.BILINEAR), float) / 255
            edges = np.asarray(img.convert("L").filter(ImageFilter.FIND_EDGES), float).mean()
        return np.append(thumb.ravel(), edges / 10)

    x = np.stack([features(i) for i in frame[ID]])
    target = truth["noise_free"].to_numpy()
    pred = cross_val_predict(RidgeCV(alphas=np.logspace(-3, 3, 13)), x, target, cv=5)
    r2 = 1 - np.mean((target - pred) ** 2) / target.var()
    assert r2 > 0.5


def test_generate_is_idempotent_and_refuses_other_content(tmp_path: Path) -> None:
    out = tmp_path / "pool"
    out.mkdir()  # an empty folder is fine
    synth.generate(out, 8, seed=2, size_range=(40, 60), workers=1)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}

    assert synth.generate(out, 8, seed=2, size_range=(40, 60)) == out.resolve()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps  # nothing rewritten

    with pytest.raises(FileExistsError, match="not a pool made with these parameters"):
        synth.generate(out, 9, seed=2, size_range=(40, 60))


def test_losing_a_race_to_the_same_pool_is_fine(tmp_path: Path) -> None:
    out = synth.generate(tmp_path / "pool", 6, seed=2, size_range=(40, 60), workers=1)
    partial = tmp_path / ".pool.partial-other"
    shutil.copytree(out, partial)  # another process built the same pool at the same time
    params = json.loads((out / "synth.json").read_text())

    writer._move_into_place(partial, out, params)

    assert not partial.exists() and (out / "train.csv").is_file()
    with pytest.raises(FileExistsError):
        shutil.copytree(out, partial)
        writer._move_into_place(partial, out, {**params, "seed": 3})


def test_a_failed_generate_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: object) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(writer, "_render_chunk", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        synth.generate(tmp_path / "pool", 8, seed=2, size_range=(40, 60), workers=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be >= 1"),
        ({"n": 4, "seed": -1}, "seed must be >= 0"),
        ({"n": 4, "size_range": (64, 32)}, "size_range must satisfy"),
    ],
)
def test_generate_rejects_bad_arguments(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synth.generate(tmp_path / "pool", **kwargs)
    assert not (tmp_path / "pool").exists()


def test_cli_synth(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "pool"
    args = ["synth", str(out), "--n", "12", "--seed", "3", "--size", "48", "64", "--workers", "1"]
    result = runner.invoke(app, [*args, "--shift", "Blur=0.5", "--shift", "appeal=-1"])
    assert result.exit_code == 0, result.output
    assert "rows             12" in result.output
    assert "noise floor" in result.output
    doc = json.loads((out / "synth.json").read_text())
    assert doc["shift"] == {"flag_shares": {"Blur": 0.5}, "appeal_shift": -1.0}

    bad = runner.invoke(app, ["synth", str(tmp_path / "other"), "--shift", "Blur=2"])
    assert bad.exit_code == 1
    assert "error: shift: share of 'Blur' must be in 0..1" in bad.output
    assert "Traceback" not in bad.output
    assert not (tmp_path / "other").exists()

    taken = runner.invoke(app, [*args[:-2], "--n", "13"])
    assert taken.exit_code == 1 and "not a pool made with these parameters" in taken.output
