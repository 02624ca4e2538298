"""Hot swap under load: a running `bentoml serve` follows the MLflow champion alias.

Two real versions of one registered model (ridge and SVR heads on the real backbone, trained on
the session champion's lakeFS commit, so embeddings are cached): the first is promoted and
exported as a bento and served with a 1 s poll; while two threads keep posting photos, the
second is promoted. Every request must succeed, ``/info`` must name the new version within
the poll + load time, ``/readyz`` must stay 200, and the scores afterwards must be the new
model's (computed by MLflow in this process on the same bytes).

The service's own registered model keeps the session's shared champion server untouched.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from pawpaw.config import Settings
from tests.fixtures.champion import Champion
from tests.fixtures.common import free_port, serving, settings_of

pytestmark = pytest.mark.integration

LOAD_SECONDS = 30.0  # at most: the load stops a few seconds after the swap is seen
AFTER_SWAP_SECONDS = 3.0
SWAPPED_IN_A_ROW = 10


@dataclass(frozen=True)
class TwoVersions:
    settings: Settings
    env: dict[str, str]
    first: str
    second: str
    bento_tag: str


@pytest.fixture(scope="module")
def two_versions(champion: Champion) -> TwoVersions:
    from pawpaw import export, registry
    from pawpaw.train import train

    name = f"pawpularity-swap-{uuid.uuid4().hex[:10]}"
    env = {
        **champion.env,
        "PAWPAW_REGISTERED_MODEL": name,
        "PAWPAW_MLFLOW_EXPERIMENT": name,
        "PAWPAW_BENTO_MODEL": name,
    }
    with settings_of(env) as st:
        first = train(st, champion.commit_id, head_kinds=("ridge",), progress=False)
        second = train(st, champion.commit_id, head_kinds=("svr",), progress=False)
        registry.promote(st, first.version)
        exported = export.export_champion(st, progress=False)
    assert first.version != second.version and exported.version == first.version
    assert exported.bento_tag is not None
    return TwoVersions(st, env, first.version, second.version, exported.bento_tag)


def _scores_of(settings: Settings, version: str, photos: list[bytes], tmp: Path) -> np.ndarray:
    import pandas as pd

    from pawpaw import evaluation

    model = evaluation.load_model(settings, version, tmp)
    return np.asarray(model.predict(pd.DataFrame({"image": photos})), dtype=np.float64)


def _post(client: httpx.Client, url: str, photo: bytes) -> float:
    response = client.post(f"{url}/predict", files=[("images", ("p.jpg", photo, "image/jpeg"))])
    assert response.status_code == 200, response.text
    return float(response.json()[0])


def test_a_promotion_swaps_the_served_model_without_a_failed_request(
    two_versions: TwoVersions, champion: Champion, tmp_path: Path
) -> None:
    from pawpaw import export, registry

    tv, photos = two_versions, champion.photos
    old = _scores_of(tv.settings, tv.first, photos, tmp_path / "old")
    new = _scores_of(tv.settings, tv.second, photos, tmp_path / "new")
    assert np.abs(old - new).max() > 1e-3  # the two versions are told apart by their scores

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).with_name("bentoml")), "serve", tv.bento_tag,
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    env = {
        **os.environ,
        **tv.env,
        **export.bento_env(tv.settings),
        "PAWPAW_SERVE_POLL_SECONDS": "1",
    }
    with serving(cmd, url=url, log_path=tmp_path / "serve.log", env=env, cwd=tmp_path):
        info = httpx.post(f"{url}/info", json={}, timeout=30).json()
        assert info["version"] == tv.first and info["source"] == "bentoml"

        stop = threading.Event()
        failures: list[str] = []
        served: list[tuple[float, int, float]] = []  # (time, photo index, score)

        def load(k: int) -> None:
            with httpx.Client(timeout=60) as client:
                i = k
                while not stop.is_set():
                    try:
                        score = _post(client, url, photos[i % len(photos)])
                        served.append((time.monotonic(), i % len(photos), score))
                    except Exception as exc:  # any failure, HTTP or assertion
                        failures.append(repr(exc))
                    i += 1

        threads = [threading.Thread(target=load, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        try:
            time.sleep(2.0)
            registry.promote(tv.settings, tv.second)
            promoted = time.monotonic()
            deadline = promoted + LOAD_SECONDS
            # On CPU every core runs a worker process, each following the alias on its own:
            # the swap is complete when 10 answers in a row (from any worker) name the new one.
            seen, in_a_row = None, 0
            while time.monotonic() < deadline:
                ready = httpx.get(f"{url}/readyz", timeout=10).status_code
                assert ready == 200, "/readyz must stay ready while the old model serves"
                info = httpx.post(f"{url}/info", json={}, timeout=10).json()
                in_a_row = in_a_row + 1 if info["version"] == tv.second else 0
                if in_a_row == SWAPPED_IN_A_ROW:
                    seen = time.monotonic()
                    break
                time.sleep(0.05 if in_a_row else 0.2)
            assert seen is not None, f"/info still names v{info['version']} after promotion"
            time.sleep(AFTER_SWAP_SECONDS)
        finally:
            stop.set()
            for t in threads:
                t.join()

        assert failures == []
        assert info["source"] == "mlflow" and info["labels"]["version"] == tv.second
        assert info["labels"]["registered_model"] == tv.settings.registered_model
        before = [(i, s) for t, i, s in served if t < promoted]
        after = [(i, s) for t, i, s in served if t > seen + 0.5]
        assert before and after
        for i, score in before:  # the old model served until the promotion
            assert score == pytest.approx(old[i], rel=1e-5)
        for i, score in after:  # and only the new one after the swap
            assert score == pytest.approx(new[i], rel=1e-5)
        fresh = [_post(httpx.Client(timeout=60), url, photo) for photo in photos]
        np.testing.assert_allclose(fresh, new, rtol=1e-5)
