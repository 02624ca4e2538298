"""The data contract's names: columns, flags and splits. Constants only (no pandas), so a DAG
file can import them at parse time."""

from __future__ import annotations

__all__ = ["COLUMNS", "FLAGS", "ID", "MIN_SAMPLE_SIZE", "SPLITS", "TARGET"]

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
# Smallest monthly sample: its test split (25%) must hold the 30 rows drift needs.
MIN_SAMPLE_SIZE = 120
