"""The Airflow image's Python packages, exported from uv.lock: nothing is resolved afresh.

    python docker/airflow/requirements.py {cpu|cuda} OUT_DIR [--project DIR]

writes, from ``uv export --frozen --no-dev`` of the project's lock:

- ``OUT_DIR/requirements.txt``: every locked package with its hashes, for
  ``pip install --no-deps --require-hashes`` (the export is complete, so no resolver runs);
- ``OUT_DIR/torch.txt``: the CPU image's ``torch``/``torchvision`` pins as local ``+cpu``
  versions, installed from the PyTorch CPU index (empty for ``cuda``);
- ``OUT_DIR/pins.txt``: ``name==version[ ; marker]`` of everything the image gets (both
  files); a package the lock pins twice for different Pythons keeps both lines, each with its
  environment marker (the image's smoke test evaluates them).

``cpu`` drops what only torch's CUDA build needs: the packages that ``uv export --prune torch
--prune torchvision`` removes and that are CUDA runtime wheels (``nvidia-*``, ``cuda-*``,
``triton``); torch's other dependencies (``networkx``, ...) stay, at their locked versions.
``cuda`` keeps the lock as it is (PyPI's CUDA torch, for the GPU training worker).

``PAWPAW_IMAGE_EXTRAS`` (space-separated) adds the project's optional extras that the lock
defines (e.g. ``celery``). The Dockerfile's first stage and tests/unit/test_docker_image.py run
this same file.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

VARIANTS = ("cpu", "cuda")
TORCH_PACKAGES = ("torch", "torchvision")
CUDA_ONLY = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]*?))?\s*\\?$")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def uv_export(project: Path, *extra: str) -> str:
    uv = os.environ.get("UV", "uv")
    cmd = [uv, "export", "--project", str(project), "--frozen", "--no-dev", "--no-emit-project"]
    cmd += ["--format", "requirements.txt", "--no-header", "--no-annotate"]
    for name in os.environ.get("PAWPAW_IMAGE_EXTRAS", "").split():
        cmd += ["--extra", name]
    done = subprocess.run([*cmd, *extra], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"requirements: {' '.join(cmd)} failed:\n{done.stderr}")
    return done.stdout


def entries(text: str) -> list[tuple[str, str, str, str]]:
    """(normalized name, version, marker, the entry's full text) of each pinned requirement."""
    out: list[tuple[str, str, str, str]] = []
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if block and not line.startswith((" ", "\t")):
            m = _PIN.match(block[0])
            if m is None:
                sys.exit(f"requirements: not a pinned requirement: {block[0]!r}")
            out.append((normalize(m[1]), m[2], m[3] or "", "\n".join(block)))
            block = []
        if line.strip() and not line.lstrip().startswith("#"):
            block.append(line)
    return out


def image_requirements(variant: str, project: Path) -> dict[str, str]:
    """{file name: content} for ``variant``; see the module docstring."""
    if variant not in VARIANTS:
        sys.exit(f"requirements: variant must be one of {VARIANTS}, not {variant!r}")
    locked = entries(uv_export(project))
    torch: list[tuple[str, str, str]] = []
    drop: set[str] = set()
    if variant == "cpu":
        pruned = {e[0] for e in entries(uv_export(project, "--no-hashes", *_prune()))}
        only_torch = {e[0] for e in locked} - pruned
        drop = {name for name in only_torch if CUDA_ONLY.match(name)} | set(TORCH_PACKAGES)
        torch = [(name, f"{ver}+cpu", "") for name, ver, _, _ in locked if name in TORCH_PACKAGES]
        if len(torch) != len(TORCH_PACKAGES):
            sys.exit(f"requirements: the lock pins {TORCH_PACKAGES} once each, not {torch}")
    kept = [e for e in locked if e[0] not in drop]
    pins = sorted([(name, ver, marker) for name, ver, marker, _ in kept] + torch)
    return {
        "requirements.txt": "\n".join(e[3] for e in kept) + "\n",
        "torch.txt": "".join(f"{name}=={ver}\n" for name, ver, _ in torch),
        "pins.txt": "".join(
            f"{name}=={ver}" + (f" ; {marker}" if marker else "") + "\n"
            for name, ver, marker in pins
        ),
    }


def _prune() -> list[str]:
    return [arg for name in TORCH_PACKAGES for arg in ("--prune", name)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("out", type=Path)
    parser.add_argument("--project", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, content in image_requirements(args.variant, args.project).items():
        (args.out / name).write_text(content)
    count = len((args.out / "pins.txt").read_text().splitlines())
    print(f"requirements: {count} packages for the {args.variant} image in {args.out}")


if __name__ == "__main__":
    main()
