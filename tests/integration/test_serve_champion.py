"""The real champion, end to end through serving: a head trained on the real backbone
(tf_efficientnet_lite0, packaged weights) on a lakeFS commit of a small synthetic sample,
registered in a real MLflow server, promoted, exported to BentoML, and served by
`bentoml serve` as a separate process. What the server answers must be what the registered
MLflow model computes on the same bytes.

One training, one export and one server for the module (module-scoped fixtures).
"""

from __future__ import annotations

import io
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from pawpaw.config import Settings, get_settings
from pawpaw.schema import ID
from tests.fixtures.common import free_port, serving
from tests.fixtures.lakefs import lakefs_namespace

pytestmark = pytest.mark.integration

N_PHOTOS = 6


@dataclass(frozen=True)
class Champion:
    settings: Settings
    commit_id: str
    version: str
    run_id: str
    model_tag: str
    bento_tag: str
    photos: list[bytes]  # test-split photos of the commit (never trained on), the last a PNG


@pytest.fixture(scope="module")
def serve_settings(
    tmp_path_factory: pytest.TempPathFactory, mlflow_server: str, lakefs_server
) -> Iterator[Settings]:
    """Settings on the session's MLflow server and lakeFS, with names of this module's own,
    through the environment (as `pawpaw` and `bentoml` child processes would see them)."""
    suffix = uuid.uuid4().hex[:10]
    repo = f"serve-{suffix}"
    home = tmp_path_factory.getbasetemp() / "bentoml-home"  # BentoML's store is per process
    env = {
        "PAWPAW_DATA_DIR": str(tmp_path_factory.mktemp("serve-data")),
        "PAWPAW_MLFLOW_TRACKING_URI": mlflow_server,
        "PAWPAW_REGISTERED_MODEL": f"pawpularity-serve-{suffix}",
        "PAWPAW_MLFLOW_EXPERIMENT": f"pawpularity-serve-{suffix}",
        "PAWPAW_LAKEFS_ENDPOINT": lakefs_server.endpoint,
        "PAWPAW_LAKEFS_ACCESS_KEY_ID": lakefs_server.access_key_id,
        "PAWPAW_LAKEFS_SECRET_ACCESS_KEY": lakefs_server.secret_access_key,
        "PAWPAW_LAKEFS_REPO": repo,
        "PAWPAW_LAKEFS_STORAGE_NAMESPACE": lakefs_namespace(lakefs_server, repo),
        "PAWPAW_LAKEFS_UPLOAD_WORKERS": "4",
        "PAWPAW_BENTO_MODEL": f"pawpularity-serve-{suffix}",
        "PAWPAW_BENTOML_HOME": str(home),
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "MLFLOW_UV_AUTO_DETECT": "false",  # don't copy this repo's uv.lock into the model
    }
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
    mp.undo()


@pytest.fixture(scope="module")
def champion(serve_settings: Settings, synthetic_pool: Path) -> Champion:
    """Commit a 100-row sample, train a ridge head on the real backbone, promote, export."""
    from pawpaw import export, registry
    from pawpaw.data.kaggle import read_dataset
    from pawpaw.data.sampling import SampleSpec
    from pawpaw.train import train
    from pawpaw.versioning import commit_sample, load_split

    st = serve_settings
    spec = SampleSpec(n=100, seed=5, val_fraction=0.2, test_fraction=0.2)
    commit = commit_sample(st, read_dataset(synthetic_pool), spec, key="serve").commit_id
    trained = train(st, commit, mode="head", head_kinds=("ridge",), progress=False)
    assert not trained.reused
    registry.promote(st, trained.version)
    exported = export.export_champion(st, progress=False)
    assert exported.version == trained.version and exported.bento_tag is not None
    test = load_split(st, commit, "test")
    photos = [test.load(str(i)) for i in test.frame[ID].iloc[: N_PHOTOS - 1]]
    photos.append(_as_png(photos[0]))  # the service takes any format the model decodes
    return Champion(
        st, commit, trained.version, trained.run_id, exported.model_tag, exported.bento_tag, photos
    )


@pytest.fixture(scope="module")
def server(champion: Champion, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`bentoml serve <the exported bento>` on a free port, in its own process group."""
    from pawpaw import export

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    workdir = tmp_path_factory.mktemp("serve-champion")
    cmd = [str(Path(sys.executable).with_name("bentoml")), "serve", champion.bento_tag,
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = {**os.environ, **export.bento_env(champion.settings)}
    with serving(cmd, url=url, log_path=workdir / "serve.log", env=env, cwd=workdir):
        yield url


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


def _as_png(jpeg: bytes) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


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
