"""The data contract shared by every stage: column names and a labelled image set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["FLAGS", "ID", "SPLITS", "TARGET", "LabeledImages"]

ID = "Id"
TARGET = "Pawpularity"
FLAGS: tuple[str, ...] = (
    "Subject Focus",
    "Eyes",
    "Face",
    "Near",
    "Action",
    "Accessory",
    "Group",
    "Collage",
    "Human",
    "Occlusion",
    "Info",
    "Blur",
)
COLUMNS: tuple[str, ...] = (ID, *FLAGS, TARGET)
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class LabeledImages:
    """Rows (``Id``, the twelve flags, ``Pawpularity``) and a way to read each row's image.

    The same type comes from a local Kaggle-format folder and from a lakeFS commit, so every
    later stage (embedding, training, evaluation, drift) works on either.
    """

    frame: pd.DataFrame
    load: Callable[[str], bytes]  # Id -> encoded image bytes (JPEG/PNG)
    # Id -> a content key (e.g. a checksum) when the source knows one without reading the
    # bytes; embedding caches use it to skip downloads. Empty when unknown.
    content_keys: dict[str, str] = field(default_factory=dict)
    source: str = ""  # human-readable origin, e.g. "lakefs://repo/<commit>/test"

    def __len__(self) -> int:
        return len(self.frame)
