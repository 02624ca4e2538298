"""The serving images of the compose stack: the bento travels with its models, GPU pinned.

docker/bento/containerize.sh runs here as it is, with the two Docker commands it calls
replaced at the boundary: `docker compose run ... airflow-cli` runs the container-side script
(docker/bento/bento-export.sh) against a local BentoML store that stands for the
`bentoml-store` volume, and `docker build` (called by the real `bentoml containerize`)
records the build context it is given. The context must hold the bento's models: a bento
folder copied alone would not (BentoML keeps models in $BENTOML_HOME/models), and
containerize would look for them on BentoCloud.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BENTO = ROOT / "docker" / "bento"
VENV_BIN = Path(sys.executable).parent

TOY_SERVICE = """
import bentoml

@bentoml.service(name="toy", image=bentoml.images.Image(python_version="3.11",
                 lock_python_packages=False).python_packages("numpy"))
class Toy:
    model_ref = bentoml.models.BentoModel("toymodel:latest")

    @bentoml.api
    def ping(self) -> str:
        return "pong"
"""

# `docker compose run [--rm --no-deps -T -e K=V --entrypoint X] SERVICE ARGS...`, run locally:
# container paths of the Airflow image map onto the repository and the stand-in store.
FAKE_COMPOSE = """#!/usr/bin/env bash
set -euo pipefail
echo "compose $*" >>"$FAKE_LOG"
[ "$1" = run ] || exit 2
shift
entry="" envs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rm | --no-deps | -T) shift ;;
        -e) envs+=("$2"); shift 2 ;;
        --entrypoint) entry="$2"; shift 2 ;;
        *) break ;;
    esac
done
[ "$1" = airflow-cli ] || exit 3
shift
args=()
for a in "$@"; do
    a="${a//\\/opt\\/airflow\\/scripts\\/bento-export.sh/$FAKE_REPO/docker/bento/bento-export.sh}"
    a="${a//\\/opt\\/airflow\\/bentoml/$FAKE_STORE}"
    args+=("$a")
done
export BENTOML_HOME="$FAKE_STORE"
[ -z "$entry" ] || exec env "${envs[@]}" "$entry" "${args[@]}"
exec env "${envs[@]}" "${args[@]}"
"""

FAKE_DOCKER = """#!/usr/bin/env bash
echo "docker $*" >>"$FAKE_LOG"
case "$1" in
    version) echo '"27.3.1"' ;;
    build) ctx="${@: -1}"; (cd "$ctx" && find models -type f | sort) >"$FAKE_CONTEXT" ;;
    *) exit 1 ;;
esac
"""


def _bentoml(home: Path, *args: str, cwd: Path | None = None) -> str:
    run = subprocess.run(
        [str(VENV_BIN / "bentoml"), *args],
        env={**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


@pytest.fixture(scope="module")
def volume_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A BentoML store as the export task leaves it: a model, and a bento that uses it."""
    base = tmp_path_factory.mktemp("bento")
    store = base / "bentoml-store"
    script = (
        "import bentoml\n"
        "with bentoml.models.create('toymodel') as m:\n"
        "    open(m.path_of('weights.bin'), 'wb').write(b'w' * 1000)\n"
        "print(m.tag)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "BENTOML_HOME": str(store), "BENTOML_DO_NOT_TRACK": "true"},
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    model_tag = run.stdout.strip().splitlines()[-1]
    src = base / "src"
    src.mkdir()
    (src / "service.py").write_text(textwrap.dedent(TOY_SERVICE))
    (src / "bentofile.yaml").write_text('service: "service:Toy"\ninclude: ["*.py"]\n')
    out = _bentoml(store, "build", ".", "--output", "tag", cwd=src)
    bento_tag = next(x for x in out.splitlines() if x.startswith("__tag__:"))[8:]
    return store, model_tag, bento_tag


def test_containerize_exports_the_bento_with_its_models_and_builds_both_images(
    volume_store: tuple[Path, str, str], tmp_path: Path
):
    store, model_tag, bento_tag = volume_store
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("compose", FAKE_COMPOSE), ("docker", FAKE_DOCKER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    host_store, archives = tmp_path / "host-bentoml", tmp_path / "archives"
    log, context = tmp_path / "calls.log", tmp_path / "context.txt"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{VENV_BIN}:{os.environ['PATH']}",
        "COMPOSE": str(bin_dir / "compose"),
        "BENTO_TAG": "toy:latest",  # stands for what `pawpaw export` prints
        "BENTO_ARCHIVE_DIR": str(archives),  # does not exist yet: the script creates it
        "BENTOML_HOME": str(host_store),
        "FAKE_REPO": str(ROOT),
        "FAKE_STORE": str(store),
        "FAKE_LOG": str(log),
        "FAKE_CONTEXT": str(context),
    }
    run = subprocess.run(
        ["bash", str(BENTO / "containerize.sh"), "gpu"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    name, version = model_tag.split(":")
    # The build context `bentoml containerize` gave Docker holds the model's files.
    assert f"models/{name}/{version}/weights.bin" in context.read_text().split()
    # The archive carries bento + model; the host store now has both (imported, not copied).
    archive = archives / "pawpularity-gpu.bento"
    assert archive.is_file() and not list(archives.glob("*.part"))
    assert (host_store / "models" / name / version / "weights.bin").is_file()
    assert (host_store / "bentos" / "toy" / bento_tag.split(":")[1] / "bento.yaml").is_file()
    calls = log.read_text()
    assert "docker build --tag pawpularity-service:gpu" in calls
    assert "bento-export.sh gpu toy:latest" in calls
    assert "docker cp" not in calls and "compose cp" not in calls
    # The tag handed over is exact (name:version), never `latest`.
    assert (store / "exports" / "pawpularity-gpu.tag").read_text().strip() == bento_tag

    # A second run (the same champion) reuses what the host store has and builds the CPU image.
    context.unlink()
    run = subprocess.run(
        ["bash", str(BENTO / "containerize.sh"), "cpu"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "already in" in run.stderr
    assert "docker build --tag pawpularity-service:cpu" in log.read_text()
    assert f"models/{name}/{version}/weights.bin" in context.read_text().split()


def test_bento_export_refuses_an_unknown_variant(tmp_path: Path):
    run = subprocess.run(
        ["bash", str(BENTO / "bento-export.sh"), "tpu", "toy:latest"],
        env={**os.environ, "BENTOML_HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert run.returncode == 2 and "gpu or cpu" in run.stderr


def test_bento_export_builds_the_variant_the_image_needs():
    """Without a tag the script asks `pawpaw export` for the variant's bento (GPU: the
    onnxruntime-gpu build with gpu: 1, CPU: onnxruntime), so `bento-cpu` gets a CPU image."""
    text = (BENTO / "bento-export.sh").read_text()
    assert "gpu) gpu=1" in text and "cpu) gpu=0" in text
    assert 'PAWPAW_SERVE_GPU="$gpu" pawpaw export' in text
    assert "python -m bentoml export" in text
    dockerfile = (ROOT / "docker" / "airflow" / "Dockerfile").read_text()
    assert "docker/bento/bento-export.sh /opt/airflow/scripts/bento-export.sh" in dockerfile


# --- the GPU bento's ONNX Runtime ------------------------------------------------------------


@cache
def _service_requirements(gpu: bool) -> list:
    probe = (
        "import json, sys; sys.path.insert(0, 'bentos'); import service; "
        f"print(json.dumps([service.requirements(gpu={gpu}), service.ONNXRUNTIME_GPU_VERSION, "
        "service.MIN_NVIDIA_DRIVER]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "true", "PAWPAW_SERVE_GPU": ""},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_gpu_bento_pins_an_exact_onnxruntime_gpu_with_cuda_extras():
    from packaging.version import Version

    gpu, version, driver = _service_requirements(True)
    cpu, _, _ = _service_requirements(False)
    ort = [r for r in gpu if r.startswith("onnxruntime")]
    assert ort == [f"onnxruntime-gpu[cuda,cudnn]=={version}"], ort
    assert Version(version) >= Version("1.21"), "preload_dlls() and the extras need >= 1.21"
    assert any(r.startswith("onnxruntime==") for r in cpu) and not any("gpu" in r for r in cpu)
    assert Version(driver) >= Version("580"), "CUDA 13 wheels need an R580 driver"
    readme = (ROOT / "README.md").read_text()
    assert driver in readme, "the README names the minimum NVIDIA driver"


def test_pinned_onnxruntime_gpu_exists_for_the_image_with_cuda_13(tmp_path: Path):
    """The pin resolves for CPython 3.11 on x86-64 Linux, and its extras bring CUDA 13 and
    cuDNN 9 wheels (uv's cache first; PyPI where the cache lacks them)."""
    (_, version, _) = _service_requirements(True)
    req = tmp_path / "ort.txt"
    req.write_text(f"onnxruntime-gpu[cuda,cudnn]=={version}\n")
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is not on PATH"
    cmd = [uv, "pip", "compile", str(req), "--python-version", "3.11",
           "--python-platform", "x86_64-manylinux_2_28", "--no-header", "--no-annotate",
           "--only-binary", ":all:", "--quiet"]  # fmt: skip
    run = subprocess.run([*cmd, "--offline"], capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    names = {line.split("==")[0] for line in run.stdout.split()}
    assert f"onnxruntime-gpu=={version}" in run.stdout.split()
    assert {"nvidia-cudnn-cu13", "nvidia-cuda-runtime", "nvidia-cublas"} <= names, names
