"""The synthetic data set: PetFinder-format photos whose score is driven by what is visible.

Public API re-exported from :mod:`pawpaw.synth.generate`.
"""

from pawpaw.synth.generate import (
    FLAG_SHARES,
    GENERATOR_VERSION,
    SCORE_MODEL,
    TRUTH_COLUMNS,
    ScoreModel,
    Shift,
    expected_score,
    generate,
    render_image,
    sample_rows,
)

__all__ = [
    "FLAG_SHARES",
    "GENERATOR_VERSION",
    "SCORE_MODEL",
    "TRUTH_COLUMNS",
    "ScoreModel",
    "Shift",
    "expected_score",
    "generate",
    "render_image",
    "sample_rows",
]
