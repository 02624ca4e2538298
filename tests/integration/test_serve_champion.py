"""The real champion, end to end through serving: a head trained on the real backbone
(tf_efficientnet_lite0, packaged weights) on a lakeFS commit of a small synthetic sample,
registered in a real MLflow server, promoted, exported to BentoML, and served by
`bentoml serve` as a separate process. What the server answers must be what the registered
MLflow model computes on the same bytes.

One training, one export and one server for the session (tests/fixtures/champion.py: the
browser tests of the upload page use the same served champion).
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from tests.fixtures.champion import N_PHOTOS, Champion

pytestmark = pytest.mark.integration


@pytest.fixture
def server(champion_server: str) -> str:
    """The session's `bentoml serve` of the champion (tests/fixtures/champion.py)."""
    return champion_server


@pytest.fixture(scope="module")
def pyfunc_scores(champion: Champion, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The registered version, loaded by MLflow in this process, on the same photos."""
    import pandas as pd

    from pawpaw import evaluation

    model = evaluation.load_model(
        champion.settings, champion.version, tmp_path_factory.mktemp("pyfunc")
    )
    scores = np.asarray(model.predict(pd.DataFrame({"image": champion.photos})), dtype=np.float64)
    assert scores.shape == (N_PHOTOS,)
    return scores


def _predict(url: str, photos: list[bytes]) -> list[float]:
    files = [("images", (f"photo{i}", b, "application/octet-stream")) for i, b in enumerate(photos)]
    response = httpx.post(f"{url}/predict", files=files, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def test_served_scores_equal_the_registered_models(
    server: str, champion: Champion, pyfunc_scores: np.ndarray
) -> None:
    served = _predict(server, champion.photos)
    np.testing.assert_allclose(served, pyfunc_scores, rtol=1e-5, atol=0)
    # A trained model, not a constant: the photos get different scores, all in range.
    assert np.ptp(pyfunc_scores) > 0.1
    assert ((pyfunc_scores >= 1) & (pyfunc_scores <= 100)).all()


def test_one_photo_at_a_time_scores_the_same(
    server: str, champion: Champion, pyfunc_scores: np.ndarray
) -> None:
    singles = [_predict(server, [photo])[0] for photo in champion.photos]
    np.testing.assert_allclose(singles, pyfunc_scores, rtol=1e-5, atol=0)


def test_info_names_the_champion(server: str, champion: Champion) -> None:
    response = httpx.post(f"{server}/info", json={}, timeout=30)
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["tag"] == champion.model_tag
    labels = info["labels"]
    assert {k: labels[k] for k in ("registered_model", "version", "run_id", "commit_id")} == {
        "registered_model": champion.settings.registered_model,
        "version": champion.version,
        "run_id": champion.run_id,
        "commit_id": champion.commit_id,
    }
    assert labels["stage"] == "champion"
    from pawpaw import registry

    assert registry.alias_version(champion.settings, registry.CHAMPION) == champion.version
