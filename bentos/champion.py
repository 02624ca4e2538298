"""Which model the service serves, and how it follows the champion without a restart.

At start the service serves the model its bento pins (``champion.json``, in the BentoML store
inside the image). From then on a :class:`ChampionFollower` thread polls the MLflow registry's
``champion`` alias; when it names another version, that version is downloaded and loaded in the
background, scored once on a test photo, and only then swapped in with a single reference
assignment (:meth:`Served.score` callers keep the model they started with, so no request fails
or mixes two models). ``/readyz`` stays 200 throughout: the old model serves until the swap.

Why poll MLflow, not the BentoML store, and not a reload call from the export task: the
production container (compose ``bento``) has no view of the host's BentoML store (its models are
baked into the image), but it reaches MLflow (``http://mlflow:5000``, artifacts proxied by the
server), and the alias is the one thing promotion moves (``pawpaw.registry.promote``). Polling
also needs no inbound endpoint that could swap models and no credential held by the export task.
A version that loads but cannot serve (its test score or the GPU check fails) is not retried
until the alias moves again; an unreachable MLflow or a failed download only delays the swap to
a later poll (the current model keeps serving).

On CPU the service runs one worker process per core and each follows the alias on its own:
for up to one poll interval (plus a load) after a promotion, a request may be answered by the
old version or the new one depending on the worker it reaches; each request is scored whole by
one model, and ``/info`` names the version of the worker that answered.

Settings (environment): ``PAWPAW_MLFLOW_TRACKING_URI`` (else ``MLFLOW_TRACKING_URI``; neither:
the service does not follow), ``PAWPAW_SERVE_POLL_SECONDS`` (default 30; 0 turns following off).
The registered model is the pinned model's ``registered_model`` label.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_POLL_SECONDS",
    "ChampionFollower",
    "Served",
    "load_mlflow_version",
    "load_stored",
    "poll_seconds",
    "tracking_uri",
]

DEFAULT_POLL_SECONDS = 30.0  # a promotion reaches the service within this (plus the load)
# Restated from pawpaw.registry.CHAMPION, pawpaw.tracking.COMMIT_TAG and
# pawpaw.model.pyfunc.IMAGE_COLUMN (those modules need the training library); a unit test
# (tests/unit/test_predictor.py) keeps them equal.
ALIAS = "champion"
COMMIT_TAG = "pawpaw.commit_id"
IMAGE_COLUMN = "image"

log = logging.getLogger("bentoml.pawpaw.champion")


@dataclass(frozen=True)
class Served:
    """A loaded model and what ``/info`` says about it."""

    model: Any  # the MLflow pyfunc (mlflow.pyfunc.PyFuncModel)
    info: dict[str, Any]  # {"tag", "version", "source", "labels"}
    files: Any = field(default=None, repr=False)  # the temp dir its files live in, if any

    @property
    def version(self) -> str:
        return str(self.info["labels"].get("version", ""))

    def score(self, images: Sequence[bytes]) -> np.ndarray:
        """Scores (float64 [N]) of encoded images, in order."""
        if not images:
            return np.empty(0, dtype=np.float64)
        predictor = _predictor_of(self.model)
        if predictor is not None:  # the project's pyfunc: its fast predictor, no DataFrame
            raw = predictor.predict(list(images))
        else:  # any pyfunc honouring the contract (a DataFrame column `image` of bytes)
            import pandas as pd

            raw = self.model.predict(pd.DataFrame({IMAGE_COLUMN: list(images)}))
        scores = np.asarray(raw, dtype=np.float64).reshape(-1)
        if scores.shape[0] != len(images) or not np.isfinite(scores).all():
            raise RuntimeError(
                f"model {self.info['tag']} returned {scores.shape[0]} scores "
                f"for {len(images)} images (or non-finite values)"
            )
        return scores

    def providers(self) -> list[str] | None:
        """ONNX Runtime providers the model really uses (None: not the project's pyfunc)."""
        predictor = _predictor_of(self.model)
        return predictor.providers if predictor is not None else None


def _predictor_of(model: Any) -> Any:
    try:
        return model.unwrap_python_model().predictor
    except Exception:  # another model type, or a pyfunc without the fast predictor
        return None


def load_stored(stored: Any) -> Served:
    """The BentoML model ``stored`` (the bento's pinned champion) as a :class:`Served`."""
    import bentoml.mlflow

    labels = dict(stored.info.labels)
    info = {
        "tag": str(stored.tag),
        "version": labels.get("version"),
        "source": "bentoml",
        "labels": labels,
    }
    return Served(bentoml.mlflow.load_model(stored), info)


def load_mlflow_version(uri: str, name: str, version: str) -> Served:
    """Registered model ``name`` version ``version``, downloaded from MLflow and loaded."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version(name, version)
    run_tags = client.get_run(mv.run_id).data.tags if mv.run_id else {}
    labels = {
        "registered_model": name,
        "version": str(mv.version),
        "run_id": mv.run_id or "",
        "commit_id": mv.tags.get(COMMIT_TAG) or run_tags.get(COMMIT_TAG, ""),
        "stage": ALIAS,
    }
    files = tempfile.TemporaryDirectory(prefix="pawpaw-champion-")  # removed with the model
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri(name, str(mv.version)),
        dst_path=files.name,
        tracking_uri=uri,
    )
    model = mlflow.pyfunc.load_model(local)
    info = {
        "tag": f"models:/{name}/{mv.version}",
        "version": str(mv.version),
        "source": "mlflow",
        "labels": labels,
    }
    return Served(model, info, files)


def tracking_uri() -> str | None:
    env = os.environ
    return env.get("PAWPAW_MLFLOW_TRACKING_URI") or env.get("MLFLOW_TRACKING_URI") or None


def poll_seconds() -> float:
    raw = os.environ.get("PAWPAW_SERVE_POLL_SECONDS", "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_POLL_SECONDS
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # NaN too
        raise ValueError(
            f"PAWPAW_SERVE_POLL_SECONDS must be a number of seconds >= 0 (0: do not follow), "
            f"got {raw!r}"
        )
    return seconds


class ChampionFollower:
    """A daemon thread that swaps in the registry's champion whenever the alias moves."""

    def __init__(
        self,
        *,
        uri: str,
        registered_model: str,
        current: Callable[[], Served],
        swap: Callable[[Served], None],
        interval: float = DEFAULT_POLL_SECONDS,
        check: Callable[[Served], None] | None = None,
    ) -> None:
        """``current``: the served model now; ``swap``: install a new one; ``check``: raise if a
        loaded model must not serve (e.g. a GPU build whose model runs on the CPU)."""
        self.uri = uri
        self.registered_model = registered_model
        self.interval = interval
        self._current = current
        self._swap = swap
        self._check = check
        self._failed: str | None = None  # a version that cannot serve: skipped until it moves
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pawpaw-follow", daemon=True)

    def start(self) -> ChampionFollower:
        log.info(
            "following %s@%s in %s every %.0f s",
            self.registered_model,
            ALIAS,
            self.uri,
            self.interval,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def check_once(self) -> bool:
        """Poll the alias once; load and swap if it moved. True when a new model was swapped in."""
        wanted = self._champion_version()
        if wanted is None or wanted == self._current().version or wanted == self._failed:
            return False
        log.info("champion is now version %s: loading it", wanted)
        try:
            served = load_mlflow_version(self.uri, self.registered_model, wanted)
        except Exception:  # a download that failed (network, MLflow restarting): next poll retries
            log.exception("version %s could not be fetched; retrying at the next poll", wanted)
            return False
        try:
            served.score([_test_photo()])  # it runs, and its first call is not a request's
            if self._check is not None:
                self._check(served)
        except Exception:
            log.exception("version %s cannot serve; keeping %s", wanted, self._current().version)
            self._failed = wanted  # this version itself is broken: skipped until the alias moves
            return False
        previous = self._current().version
        self._swap(served)
        log.info("swapped version %s -> %s", previous, wanted)
        return True

    def _champion_version(self) -> str | None:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        try:
            return str(client.get_model_version_by_alias(self.registered_model, ALIAS).version)
        except MlflowException as exc:
            log.warning("cannot read %s@%s: %s", self.registered_model, ALIAS, exc)
            return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_once()
            except Exception:  # MLflow down, network trouble: the current model keeps serving
                log.exception("polling %s@%s failed", self.registered_model, ALIAS)


def _test_photo() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.linear_gradient("L").resize((96, 64)).convert("RGB").save(buf, format="JPEG")
    return buf.getvalue()
