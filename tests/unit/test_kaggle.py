"""The Kaggle-format reader: what it accepts, and a clear DataError for each kind of bad input."""

from __future__ import annotations

import hashlib
import io
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from pawpaw.cli import app
from pawpaw.data.kaggle import DataError, read_dataset, summarize
from pawpaw.data.labeled import LabeledImages
from pawpaw.schema import COLUMNS, FLAGS, ID, TARGET

pytestmark = pytest.mark.unit

IDS = [hashlib.md5(str(i).encode()).hexdigest() for i in range(4)]


def _image(fmt: str = "JPEG", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _rows() -> list[dict[str, object]]:
    rows = []
    for i, image_id in enumerate(IDS):
        row: dict[str, object] = {ID: image_id, **{f: (i + j) % 2 for j, f in enumerate(FLAGS)}}
        row[TARGET] = [1, 38, 77, 100][i]
        rows.append(row)
    return rows


def _write(root: Path, rows: list[dict[str, object]] | None = None, csv: str = "train.csv") -> Path:
    """A valid data set (4 rows) at ``root``; returns root."""
    (root / "train").mkdir(parents=True)
    pd.DataFrame(rows or _rows()).to_csv(root / csv, index=False)
    for i, image_id in enumerate(IDS):
        (root / "train" / f"{image_id}.jpg").write_bytes(_image(seed=i))
    return root


def _csv_with(root: Path, line: int, column: str, value: str) -> None:
    """Set one cell of train.csv by its 1-based CSV line (the header is line 1)."""
    frame = pd.read_csv(root / "train.csv", dtype=str)
    frame.loc[line - 2, column] = value
    frame.to_csv(root / "train.csv", index=False)


def _zip(root: Path, target: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(root).as_posix())
    return target


def test_reads_a_valid_folder(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds")
    data = read_dataset(root)

    assert isinstance(data, LabeledImages)
    assert list(data.frame.columns) == list(COLUMNS)
    assert data.frame[ID].tolist() == IDS
    assert all(data.frame[c].dtype == np.int64 for c in (*FLAGS, TARGET))
    assert data.frame[TARGET].tolist() == [1, 38, 77, 100]
    assert data.source == str(root.resolve())
    raw = (root / "train" / f"{IDS[2]}.jpg").read_bytes()
    assert data.load(IDS[2]) == raw
    assert data.content_keys[IDS[2]] == "sha256:" + hashlib.sha256(raw).hexdigest()
    # The loader travels to worker processes.
    assert pickle.loads(pickle.dumps(data.load))(IDS[2]) == raw


def test_accepts_data_csv_and_a_path_to_the_csv(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds", csv="data.csv")
    assert len(read_dataset(root)) == 4
    assert len(read_dataset(root / "data.csv")) == 4


@pytest.mark.parametrize("prefix", ["", "petfinder/"], ids=["top-level", "in-a-folder"])
def test_accepts_a_zip(tmp_path: Path, prefix: str) -> None:
    root = _write(tmp_path / "ds")
    archive = _zip(root, tmp_path / "ds.zip", prefix)

    data = read_dataset(archive)

    assert data.frame[ID].tolist() == IDS
    assert data.source == str(archive.resolve())
    raw = (root / "train" / f"{IDS[1]}.jpg").read_bytes()
    assert data.load(IDS[1]) == raw
    assert pickle.loads(pickle.dumps(data.load))(IDS[1]) == raw


def test_accepts_png_bytes_in_a_jpg_file(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds")
    (root / "train" / f"{IDS[0]}.jpg").write_bytes(_image("PNG"))
    assert len(read_dataset(root)) == 4


@pytest.mark.parametrize(
    ("line", "column", "value", "expected"),
    [
        (3, "Blur", "2", "Blur = '2', not 0 or 1"),
        (4, "Near", "yes", "Near = 'yes', not 0 or 1"),
        (2, TARGET, "0", "Pawpularity = '0', not an integer in 1..100"),
        (5, TARGET, "101", "Pawpularity = '101', not an integer in 1..100"),
        (3, TARGET, "3.5", "Pawpularity = '3.5', not an integer in 1..100"),
        (4, TARGET, "", "Pawpularity = '', not an integer in 1..100"),
        (2, ID, "not-an-id", "Id is not 32 hex characters"),
    ],
)
def test_rejects_a_bad_value_naming_file_line_and_problem(
    tmp_path: Path, line: int, column: str, value: str, expected: str
) -> None:
    root = _write(tmp_path / "ds")
    _csv_with(root, line, column, value)

    with pytest.raises(DataError) as err:
        read_dataset(root)

    message = str(err.value)
    assert str(root / "train.csv") in message
    assert f"line {line} " in message
    assert expected in message


def test_rejects_a_missing_column(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds", [{k: v for k, v in r.items() if k != "Blur"} for r in _rows()])
    with pytest.raises(DataError, match=r"train\.csv: line 1: missing required column\(s\) Blur"):
        read_dataset(root)


def test_rejects_a_repeated_column(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds")
    text = (root / "train.csv").read_text().splitlines()
    (root / "train.csv").write_text(
        "\n".join([text[0] + ",Blur", *(t + ",0" for t in text[1:])]) + "\n"
    )
    with pytest.raises(DataError, match="Blur appear more than once"):
        read_dataset(root)


def test_ignores_extra_columns(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds", [{**r, "Breed": "tabby"} for r in _rows()])
    assert list(read_dataset(root).frame.columns) == list(COLUMNS)


def test_rejects_a_duplicate_id(tmp_path: Path) -> None:
    rows = _rows()
    rows[3][ID] = IDS[1]
    root = _write(tmp_path / "ds", rows)
    with pytest.raises(DataError, match=rf"line 5: duplicate Id '{IDS[1]}' \(first on line 3\)"):
        read_dataset(root)


def test_rejects_an_empty_csv(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds")
    (root / "train.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(DataError, match="no rows after the header"):
        read_dataset(root)


def test_lists_the_first_problems_and_counts_the_rest(tmp_path: Path) -> None:
    rows = [{**r, "Eyes": 7} for r in _rows()] + [
        {**_rows()[0], ID: f"{i:032x}", "Eyes": 7} for i in range(4)
    ]
    root = _write(tmp_path / "ds", rows)
    with pytest.raises(DataError, match=r"8 bad row\(s\): line 2 .*; and 3 more$"):
        read_dataset(root, check_images=False)


def test_rejects_a_missing_image(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds")
    (root / "train" / f"{IDS[2]}.jpg").unlink()
    with pytest.raises(DataError, match=rf"1 image\(s\) missing: .*{IDS[2]}\.jpg \(line 4\): no"):
        read_dataset(root)


def test_rejects_a_missing_image_in_a_zip(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds")
    (root / "train" / f"{IDS[0]}.jpg").unlink()
    archive = _zip(root, tmp_path / "ds.zip", "sub/")
    with pytest.raises(DataError, match=rf"ds\.zip!sub/train/{IDS[0]}\.jpg \(line 2\): no such"):
        read_dataset(archive)


def test_rejects_a_missing_train_folder(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds")
    shutil.rmtree(root / "train")
    with pytest.raises(DataError, match="train: no such folder"):
        read_dataset(root)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"this is not an image at all", "is not an image PIL can identify"),
        (_image()[: len(_image()) * 7 // 10], "cannot be decoded"),  # truncated JPEG
        (_image("GIF"), "is a GIF image, not JPEG or PNG"),
        (_image("BMP"), "is a BMP image, not JPEG or PNG"),
    ],
    ids=["garbage", "truncated", "gif", "bmp"],
)
def test_rejects_a_bad_image(tmp_path: Path, payload: bytes, expected: str) -> None:
    root = _write(tmp_path / "ds")
    (root / "train" / f"{IDS[1]}.jpg").write_bytes(payload)

    with pytest.raises(DataError) as err:
        read_dataset(root)

    message = str(err.value)
    assert f"{IDS[1]}.jpg (line 3): {expected}" in message
    assert "1 bad image(s)" in message


def test_check_images_false_reads_the_table_only(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds")
    (root / "train" / f"{IDS[1]}.jpg").write_bytes(b"garbage")
    data = read_dataset(root, check_images=False)
    assert len(data) == 4
    assert data.content_keys == {}


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("nothing", None, "no such file or folder"),
        ("empty-folder", "", "no train.csv or data.csv in this folder"),
        ("notes.txt", "hello", "not a folder, a .csv or a .zip"),
    ],
)
def test_rejects_a_path_that_is_no_data_set(
    tmp_path: Path, name: str, content: str | None, expected: str
) -> None:
    path = tmp_path / name
    if content == "":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=expected):
        read_dataset(path)


def test_rejects_a_zip_without_csv(tmp_path: Path) -> None:
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("deep/er/train.csv", "Id\n")
    with pytest.raises(DataError, match=r"no train\.csv or data\.csv at the top of the zip"):
        read_dataset(archive)


def test_summarize() -> None:
    frame = pd.DataFrame(
        [
            {ID: IDS[i], **dict.fromkeys(FLAGS, i % 2), TARGET: s}
            for i, s in enumerate([10, 20, 30, 100])
        ]
    )
    summary = summarize(frame)
    assert summary["rows"] == 4
    assert summary["flag_shares"] == dict.fromkeys(FLAGS, 0.5)
    score = summary["score"]
    assert score["mean"] == 40.0
    assert score["std"] == pytest.approx(np.std([10, 20, 30, 100]))
    assert (score["min"], score["median"], score["max"]) == (10.0, 25.0, 100.0)
    assert (score["q25"], score["q75"]) == (17.5, 47.5)
    assert score["share_100"] == 0.25


def test_cli_validate(tmp_path: Path) -> None:
    root = _write(tmp_path / "ds")
    runner = CliRunner()

    ok = runner.invoke(app, ["validate", str(root)])
    assert ok.exit_code == 0, ok.output
    assert "rows             4" in ok.output
    assert "Blur=0.500" in ok.output
    assert "mean 54.00" in ok.output

    _csv_with(root, 3, "Blur", "2")
    bad = runner.invoke(app, ["validate", str(root)])
    assert bad.exit_code == 1
    assert "error: " in bad.output
    assert "line 3" in bad.output and "Blur = '2'" in bad.output
    assert "Traceback" not in bad.output
