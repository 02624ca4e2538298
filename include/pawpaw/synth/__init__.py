"""The synthetic data set: PetFinder-format photos whose score is driven by what is visible.

Modules, one concept each (imports flow downwards: writer -> render -> figures; writer ->
scores -> truth):

- :mod:`~pawpaw.synth.writer`: the writer, :func:`generate` (a pool folder on disk);
- :mod:`~pawpaw.synth.render`: the picture of a row, :func:`render_image`;
- :mod:`~pawpaw.synth.figures`: the elements a picture is drawn from (scene, pets, person...);
- :mod:`~pawpaw.synth.scores`: the score model and the table of rows, :func:`sample_rows`;
- :mod:`~pawpaw.synth.truth`: the per-row ground truth and the noise floor computed from it.

The public API of all of them is re-exported here: ``from pawpaw import synth;
synth.generate(...)``.
"""

from pawpaw.synth.render import render_image
from pawpaw.synth.scores import (
    FLAG_SHARES,
    SCORE_MODEL,
    TRUTH_COLUMNS,
    ScoreModel,
    Shift,
    expected_score,
    sample_rows,
)
from pawpaw.synth.truth import SYNTH_FILE, noise_floor, pool_noise_floor, split_noise_floors
from pawpaw.synth.writer import GENERATOR_VERSION, generate

__all__ = [
    "FLAG_SHARES",
    "GENERATOR_VERSION",
    "SCORE_MODEL",
    "SYNTH_FILE",
    "TRUTH_COLUMNS",
    "ScoreModel",
    "Shift",
    "expected_score",
    "generate",
    "noise_floor",
    "pool_noise_floor",
    "render_image",
    "sample_rows",
    "split_noise_floors",
]
