"""A drift frame from labeled images and a model's predictions: what :func:`measure_drift` reads.

One row per image: ``Id``, the twelve flags and ``Pawpularity`` (from the data), the model's
``prediction`` (matched by ``Id``), the photo statistics, and the frozen backbone's embedding
(``embedding_0`` ...; cached by content, so the images the pipeline already embedded for
training cost nothing here). Nothing here knows lakeFS or MLflow: the caller brings the data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pawpaw.data.labeled import LabeledImages
from pawpaw.drift.inputs import EMBEDDING_PREFIX, PREDICTION, DriftError
from pawpaw.schema import FLAGS, ID, TARGET

if TYPE_CHECKING:
    from pawpaw.config import Settings

__all__ = ["drift_frame"]


def drift_frame(
    settings: Settings,
    data: LabeledImages,
    predictions: pd.DataFrame,
    *,
    progress: bool = False,
) -> pd.DataFrame:
    """The drift frame of ``data`` scored by ``predictions`` (columns ``Id``, ``prediction``)."""
    from pawpaw.data.image_stats import describe_images
    from pawpaw.model.embed import Embedder, EmbeddingCache

    rows = data.frame[[ID, *FLAGS, TARGET]].reset_index(drop=True)
    rows[ID] = rows[ID].astype(str)
    absent = [c for c in (ID, PREDICTION) if c not in predictions.columns]
    if absent:
        raise DriftError(f"the predictions lack columns {absent}")
    scores = predictions[[ID, PREDICTION]].astype({ID: str})
    twice = scores.loc[scores[ID].duplicated(), ID].unique().tolist()
    if twice:
        raise DriftError(f"the predictions score {len(twice)} Ids twice (e.g. {twice[:3]})")
    missing = sorted(set(rows[ID]) - set(scores[ID]))
    if missing:
        raise DriftError(
            f"{len(missing)} images of {data.source or 'the data'} have no prediction "
            f"(e.g. {missing[:3]}): were the predictions made on another split?"
        )
    embedder = Embedder.from_settings(settings)
    cache = EmbeddingCache.for_embedder(embedder, settings)
    vectors = embedder.embed(data, cache=cache, progress=progress)
    stats = describe_images(data).drop(columns=[ID]).reset_index(drop=True)
    embedded = pd.DataFrame(
        np.asarray(vectors, dtype=np.float64),
        columns=[f"{EMBEDDING_PREFIX}{i}" for i in range(vectors.shape[1])],
    )
    frame = pd.concat([rows, stats, embedded], axis=1)
    return frame.merge(scores, on=ID, how="left", validate="one_to_one")
