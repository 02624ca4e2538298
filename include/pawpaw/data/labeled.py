"""A labelled image set: the type every stage after reading works on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["LabeledImages"]


@dataclass(frozen=True)
class LabeledImages:
    """Rows (``Id``, the twelve flags, ``Pawpularity``) and a way to read each row's image.

    The same type comes from a local Kaggle-format folder and from a lakeFS commit, so every
    later stage (embedding, training, evaluation, drift) works on either.
    """

    frame: pd.DataFrame
    load: Callable[[str], bytes]  # Id -> encoded image bytes (JPEG/PNG/WebP)
    # Id -> a content key (e.g. a checksum) when the source knows one without reading the
    # bytes; embedding caches use it to skip downloads. Empty when unknown.
    content_keys: dict[str, str] = field(default_factory=dict)
    source: str = ""  # human-readable origin, e.g. "lakefs://repo/<commit>/test"

    def __len__(self) -> int:
        return len(self.frame)
