"""What a drift measurement takes: the input columns, their checks, the chunk size, the month.

A frame has one row per test image: ``Id``, the served model's ``prediction``, the label
``Pawpularity``, the twelve flags (0/1), the photo statistics and the frozen backbone's
embedding as ``EMBEDDING_PREFIX``-numbered columns (``embedding_0`` ...). Every check raises
:class:`DriftError` naming what is wrong, before anything is computed or written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from pawpaw.data.image_stats import STAT_COLUMNS
from pawpaw.schema import FLAGS, ID, TARGET

__all__ = [
    "EMBEDDING_PREFIX",
    "INPUT_COLUMNS",
    "MONITORED_STATS",
    "PREDICTION",
    "DriftError",
    "checked_frame",
    "chunk_size_for",
    "embedding_columns",
    "month_start",
]

PREDICTION = "prediction"
EMBEDDING_PREFIX = "embedding_"
INPUT_COLUMNS: tuple[str, ...] = (ID, PREDICTION, TARGET, *FLAGS, *STAT_COLUMNS)
# width is height x aspect_ratio: monitoring all three would count one change twice.
MONITORED_STATS: tuple[str, ...] = tuple(c for c in STAT_COLUMNS if c != "width")

# Chunks (for the plots): aim for ~10 reference and >= 5 analysis chunks; a distance between
# distributions of fewer than 10 points means nothing; a threshold needs >= 3 chunks.
_MIN_CHUNK_SIZE = 10
_TARGET_REFERENCE_CHUNKS = 10
_TARGET_ANALYSIS_CHUNKS = 5
_MIN_REFERENCE_CHUNKS = 3


class DriftError(ValueError):
    """Bad input to a drift measurement; nothing was written."""


def embedding_columns(frame: pd.DataFrame) -> list[str]:
    """The embedding columns of ``frame``, in dimension order."""
    found = [c for c in frame.columns if str(c).startswith(EMBEDDING_PREFIX)]
    return sorted(found, key=lambda c: int(str(c)[len(EMBEDDING_PREFIX) :]))


def checked_frame(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The input columns of ``frame`` as a fresh 0..n-1 indexed copy, or a DriftError."""
    if not isinstance(frame, pd.DataFrame):
        raise DriftError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise DriftError(f"{name} frame lacks columns {missing} (needs {list(INPUT_COLUMNS)})")
    if frame.empty:
        raise DriftError(f"{name} frame has no rows")
    try:
        embedded = embedding_columns(frame)
    except ValueError:
        raise DriftError(
            f"{name} frame: embedding columns must be named {EMBEDDING_PREFIX}<n>"
        ) from None
    if not embedded:
        raise DriftError(f"{name} frame has no {EMBEDDING_PREFIX}<n> columns (the embeddings)")
    columns = [*INPUT_COLUMNS, *embedded]
    out = frame.loc[:, columns].reset_index(drop=True)
    ids = out[ID]
    if ids.isna().any():
        raise DriftError(f"{name} frame: {int(ids.isna().sum())} rows have no {ID}")
    duplicated = ids[ids.duplicated()].astype(str).unique().tolist()
    if duplicated:
        raise DriftError(f"{name} frame: duplicate {ID}s {_some(duplicated)}")
    for column in columns[1:]:
        values = out[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise DriftError(f"{name} frame: column {column!r} is {values.dtype}, not numeric")
        values = values.astype("float64")
        bad = ~np.isfinite(values.to_numpy())
        if bad.any():
            raise DriftError(
                f"{name} frame: column {column!r} has {int(bad.sum())} NaN/infinite values "
                f"(Ids {_some(ids[bad].astype(str).tolist())})"
            )
        out[column] = values
    out[ID] = ids.astype(str)
    return out


def chunk_size_for(n_reference: int, n_analysis: int, chunk_size: int | None) -> int:
    """``chunk_size``, or its default when None, checked against both frames' row counts."""
    if chunk_size is None:
        size = max(
            _MIN_CHUNK_SIZE,
            min(n_reference // _TARGET_REFERENCE_CHUNKS, n_analysis // _TARGET_ANALYSIS_CHUNKS),
        )
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer):
        raise DriftError(f"chunk_size must be an integer, got {chunk_size!r}")
    elif chunk_size < _MIN_CHUNK_SIZE:
        raise DriftError(f"chunk_size must be >= {_MIN_CHUNK_SIZE}, got {chunk_size}")
    else:
        size = int(chunk_size)
    if n_reference < _MIN_REFERENCE_CHUNKS * size:
        raise DriftError(
            f"reference frame has {n_reference} rows: thresholds need at least "
            f"{_MIN_REFERENCE_CHUNKS} chunks of {size} rows ({_MIN_REFERENCE_CHUNKS * size} rows)"
        )
    if n_analysis < size:
        raise DriftError(
            f"analysis frame has {n_analysis} rows: fewer than one chunk of {size} rows"
        )
    return size


def month_start(value: datetime | str, name: str = "month") -> datetime:
    """The first instant of ``value``'s month as naive UTC (TIMESTAMP columns hold naive UTC):
    a datetime (aware ones converted to UTC, naive ones taken as UTC) or ``"YYYY-MM"``."""
    if isinstance(value, str):
        try:
            value = datetime.strptime(value.strip(), "%Y-%m")
        except ValueError:
            raise DriftError(f"{name} must look like YYYY-MM, got {value!r}") from None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        raise DriftError(f"{name} must be a datetime or YYYY-MM, got {type(value).__name__}")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return datetime(value.year, value.month, 1)


def _some(items: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")
