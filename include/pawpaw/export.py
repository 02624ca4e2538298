"""Export the MLflow champion into BentoML: a model in the BentoML store, then a bento.

``models:/<registered_model>@champion`` is imported as BentoML model ``settings.bento_model``
labelled with where it came from (registered model, version, run id, lakeFS commit id, stage);
then a bento is built from ``settings.bento_service_dir`` (``bentos/``) pinned to that model.
Both steps are idempotent: a model whose labels name the same registered model, version and run
is reused, and so is a bento built for the same model from the same sources.

The bento is built from a staged copy of ``bentos/``: the service's own files, the few
``pawpaw`` modules it imports (found by reading its imports, so the container needs no
``pawpaw`` install), ``champion.json`` (the pinned model tag) and ``model-requirements.txt``
(the MLflow model's requirements, merged into the image). ``bentoml build`` runs in a child
process, offline (``lock_python_packages=False``), and writes ``env/docker/Dockerfile``.

Where BentoML keeps its store: ``settings.bentoml_home``, else ``$BENTOML_HOME``, else
``~/bentoml``. BentoML resolves this once per process, so it is applied before BentoML is used.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pawpaw.config import Settings
from pawpaw.progress import say
from pawpaw.registry import CHAMPION, alias_version
from pawpaw.tracking import COMMIT_TAG, mlflow_client
from pawpaw.vendoring import VendoringError, vendor_pawpaw

if TYPE_CHECKING:
    import bentoml

__all__ = [
    "ExportError",
    "ExportResult",
    "bento_env",
    "export_champion",
    "request_score",
    "stage_bento_context",
]

_GENERATED = ("champion.json", "model-requirements.txt")  # written by staging, never copied
_MLFLOW_MODEL_FOLDER = "mlflow_model"  # where bentoml.mlflow keeps the MLflow model


class ExportError(RuntimeError):
    """The champion cannot be exported; the message says why and what to do."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_champion` exported, and whether it reused existing store entries."""

    version: str  # the registered model version that was exported
    model_tag: str  # BentoML model tag, e.g. "pawpularity:abc123"
    bento_tag: str | None  # None when build=False
    model_reused: bool = False
    bento_reused: bool = False


def bento_env(settings: Settings) -> dict[str, str]:
    """Environment for a `bentoml` child process: the same store, no usage tracking."""
    env = {"BENTOML_DO_NOT_TRACK": "True"}
    home = _bentoml_home(settings)
    if home is not None:
        env["BENTOML_HOME"] = str(home)
    return env


def export_champion(
    settings: Settings, *, build: bool = True, progress: bool = True
) -> ExportResult:
    """Import the champion into the BentoML store and build its bento (both idempotent)."""
    bentoml = _import_bentoml(settings)
    champion = _champion(settings)
    labels = champion["labels"]
    _say(progress, f"champion: {settings.registered_model} v{labels['version']}")

    model = _find_model(bentoml, settings.bento_model, labels)
    model_reused = model is not None
    if model is None:
        _say(progress, f"importing models:/{settings.registered_model}/{labels['version']}")
        model = _import_model(bentoml, settings, champion)
    _say(progress, f"BentoML model {model.tag} ({'reused' if model_reused else 'imported'})")
    if not build:
        return ExportResult(labels["version"], str(model.tag), None, model_reused)

    with tempfile.TemporaryDirectory(prefix="pawpaw-bento-") as tmp:
        ctx = stage_bento_context(settings, model, Path(tmp) / "ctx")
        digest = _tree_digest(ctx)
        bento_labels = {**labels, "model_tag": str(model.tag), "source_digest": digest}
        bento_tag = _find_bento(bentoml, settings.bento_model, bento_labels)
        bento_reused = bento_tag is not None
        if bento_tag is None:
            _say(progress, f"building bento {settings.bento_model} from {ctx}")
            bento_tag = _build_bento(settings, ctx, bento_labels)
    _say(progress, f"bento {bento_tag} ({'reused' if bento_reused else 'built'})")
    return ExportResult(labels["version"], str(model.tag), bento_tag, model_reused, bento_reused)


def stage_bento_context(settings: Settings, model: bentoml.Model, dest: Path) -> Path:
    """A buildable copy of the service directory, pinned to ``model``; returns ``dest``."""
    src = settings.bento_service_dir
    if not (src / "service.py").is_file():
        raise ExportError(f"no service.py in bento_service_dir {src}")
    if dest.exists():
        raise ExportError(f"staging directory {dest} already exists")
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *_GENERATED))
    mlflow_model = Path(model.path_of(_MLFLOW_MODEL_FOLDER))
    _vendor_pawpaw(dest, _model_code_dir(mlflow_model))
    pin = {"model_tag": str(model.tag), "labels": dict(model.info.labels)}
    (dest / "champion.json").write_text(json.dumps(pin, indent=2, sort_keys=True) + "\n")
    requirements = mlflow_model / "requirements.txt"
    if requirements.is_file():
        shutil.copyfile(requirements, dest / "model-requirements.txt")
    return dest


def request_score(url: str, image: bytes, *, timeout: float = 60.0) -> float:
    """Score one encoded image with a running service at ``url`` (POST /predict)."""
    import httpx

    response = httpx.post(
        f"{url.rstrip('/')}/predict",
        files=[("images", ("photo", image, "application/octet-stream"))],
        timeout=timeout,
    )
    if response.status_code != 200:
        raise ExportError(f"{url}/predict answered {response.status_code}: {response.text}")
    return float(response.json()[0])


# --- MLflow side ------------------------------------------------------------------------------


def _champion(settings: Settings) -> dict[str, Any]:
    """The champion's version, labels (provenance) and metrics, read from the registry."""
    client = mlflow_client(settings)
    name = settings.registered_model
    version = alias_version(settings, CHAMPION, client)
    if version is None:
        raise ExportError(
            f"no champion to export: registered model {name!r} has no alias {CHAMPION!r} in "
            f"{_redact(settings.tracking_uri)}; train and promote a model first"
        )
    mv = client.get_model_version(name, version)
    run = client.get_run(mv.run_id) if mv.run_id else None
    run_tags = run.data.tags if run else {}
    metrics = dict(run.data.metrics) if run else {}
    labels = {
        "registered_model": name,
        "version": str(mv.version),
        "run_id": mv.run_id or "",
        # Training tags both the version and its run; either is the provenance we want.
        "commit_id": mv.tags.get(COMMIT_TAG) or run_tags.get(COMMIT_TAG, ""),
        "stage": CHAMPION,
    }
    # Resolved here, with this client: MLflow's `models:/` download would use the global
    # registry URI, and a library function must not set that.
    download_uri = client.get_model_version_download_uri(name, mv.version)
    return {"labels": labels, "metrics": metrics, "download_uri": download_uri}


def _import_model(bentoml: Any, settings: Settings, champion: dict[str, Any]) -> bentoml.Model:
    import bentoml.mlflow
    from mlflow.artifacts import download_artifacts

    labels = champion["labels"]
    uri = settings.tracking_uri
    model_uri = f"models:/{labels['registered_model']}/{labels['version']}"
    metadata: dict[str, Any] = {f"metric.{k}": float(v) for k, v in champion["metrics"].items()}
    metadata["mlflow_model_uri"] = model_uri
    with tempfile.TemporaryDirectory(prefix="pawpaw-export-") as tmp:
        local = download_artifacts(
            artifact_uri=champion["download_uri"], dst_path=tmp, tracking_uri=uri, registry_uri=uri
        )
        return bentoml.mlflow.import_model(
            settings.bento_model,
            local,
            signatures={"predict": {"batchable": True}},
            labels=labels,
            metadata=metadata,
        )


# --- BentoML side -----------------------------------------------------------------------------


def _bentoml_home(settings: Settings) -> Path | None:
    if settings.bentoml_home is not None:
        return settings.bentoml_home.expanduser().resolve()
    if os.environ.get("BENTOML_HOME"):
        return Path(os.environ["BENTOML_HOME"]).expanduser().resolve()
    return None


def _import_bentoml(settings: Settings) -> Any:
    """Import bentoml with the store from settings; refuse if this process uses another one."""
    home = _bentoml_home(settings)
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    if home is not None:
        os.environ["BENTOML_HOME"] = str(home)
    import bentoml
    from bentoml._internal.configuration.containers import BentoMLContainer

    active = Path(BentoMLContainer.bentoml_home.get()).resolve()
    if home is not None and active != home:
        raise ExportError(
            f"BentoML already uses the store {active} in this process; it cannot switch to "
            f"{home}. Set BENTOML_HOME before BentoML is first used."
        )
    return bentoml


def _find_model(bentoml: Any, name: str, labels: dict[str, str]) -> bentoml.Model | None:
    keys = ("registered_model", "version", "run_id")
    for model in _listed(bentoml.models.list, name):
        if all(model.info.labels.get(k) == labels[k] for k in keys):
            return model
    return None


def _find_bento(bentoml: Any, name: str, labels: dict[str, str]) -> str | None:
    for bento in _listed(bentoml.bentos.list, name):
        if all(bento.info.labels.get(k) == labels[k] for k in ("model_tag", "source_digest")):
            return str(bento.tag)
    return None


def _listed(lister: Any, name: str) -> list[Any]:
    from bentoml.exceptions import NotFound

    try:
        return lister(name)
    except NotFound:  # nothing stored under this name yet
        return []


def _build_bento(settings: Settings, ctx: Path, labels: dict[str, str]) -> str:
    """Run `bentoml build` on the staged context in a child process; return the bento tag.

    A child process keeps the staged `service`, `page` and `uploads` modules out of this
    process's imports (they are top-level names) and runs the real CLI.
    """
    cmd = [sys.executable, "-m", "bentoml", "build", str(ctx), "--name", settings.bento_model]
    for key, value in sorted(labels.items()):
        cmd += ["--label", f"{key}={value}"]
    cmd += ["--output", "tag"]
    done = subprocess.run(
        cmd,
        cwd=ctx,
        env={**os.environ, **bento_env(settings)},
        capture_output=True,
        text=True,
        check=False,
    )
    tag = next(
        (line.split("__tag__:", 1)[1].strip() for line in done.stdout.splitlines()
         if line.startswith("__tag__:")),
        None,
    )  # fmt: skip
    if done.returncode != 0 or tag is None:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise ExportError(f"bentoml build failed (exit {done.returncode}):\n{tail}")
    return tag


# --- staging helpers --------------------------------------------------------------------------


def _vendor_pawpaw(ctx: Path, model_code: Path | None) -> None:
    """Put the `pawpaw` modules the service and the model import into ``ctx/pawpaw``.

    Both import ``pawpaw.*``, and a process has one ``pawpaw`` package: the service imports it
    first (from the bento's ``src``), so it must also hold what the MLflow model's own code
    (its ``code_paths`` copy of ``pawpaw``) needs. Where both have a module, the model's copy
    wins: it is what the model was trained and validated with.
    """
    override = model_code / "pawpaw" if model_code is not None else None
    try:
        vendor_pawpaw(
            sorted(ctx.glob("*.py")),
            ctx,
            override=override if override is not None and override.is_dir() else None,
        )
    except VendoringError as exc:
        raise ExportError(str(exc)) from exc


def _model_code_dir(mlflow_model: Path) -> Path | None:
    """The MLflow model's `code_paths` folder (pyfunc flavor's ``code``), if it has one."""
    import yaml

    mlmodel = mlflow_model / "MLmodel"
    if not mlmodel.is_file():
        return None
    flavors = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {})
    code = (flavors.get("python_function") or {}).get("code")
    return mlflow_model / code if code else None


def _tree_digest(root: Path) -> str:
    """Content digest of a directory (paths and bytes) plus the build-time GPU switch."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    h.update(f"gpu={os.environ.get('PAWPAW_SERVE_GPU', '')}".encode())
    return h.hexdigest()[:16]


def _redact(uri: str) -> str:
    """A URI without credentials, for messages."""
    scheme, sep, rest = uri.partition("://")
    return f"{scheme}{sep}{rest.rsplit('@', 1)[-1]}" if sep else uri


_say = functools.partial(say, tag="export")
