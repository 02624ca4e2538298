"""Benchmark: the BentoML service's /predict against a seed-style server and raw ONNX Runtime.

    python benchmarks/serving.py [--seconds 15] [--n 300] [--workdir DIR]
    python benchmarks/serving.py --bento TAG --bentoml-home DIR   # serve an existing bento

Without ``--bento`` it synthesizes a small pool (``--n`` images), commits it to the lakeFS
emulator, trains a head-mode champion (ridge head) with MLflow on SQLite, and exports it as a
bento, all in a temp work dir. Then, on free ports of 127.0.0.1 only:

- ``bentoml serve TAG`` (the service of ``bentos/service.py``; adaptive batching);
- an anchor "seed-style" server started by this file (``--anchor-server PORT MODEL_DIR``):
  Starlette + uvicorn, eager PyTorch timm ``tf_efficientnet_lite0`` with the packaged weights
  (eval, no_grad) and the champion's own head, one image per model call.

Both are driven with the same JPEGs of the pool by an asyncio + httpx closed-loop load
generator (one image per request) at each ``--concurrency`` for ``--seconds`` each. Reported:
img/s, p50/p99 latency (ms) and errors for both servers; raw ONNX Runtime img/s on the same
backbone graph plus head (best over batch sizes 1, 8, 32 on pre-decoded tensors); and the
ratios bento/raw-ORT and bento/anchor. A table goes to stdout, JSON to
``benchmarks/results/serving.json``. Every server started here is stopped at the end (its
process group and any descendants' groups), also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pawpaw.config import PROJECT_ROOT, Settings

READY_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 60.0


# --- helpers ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _model_files(model_dir: Path) -> tuple[Path, Path, Path]:
    """(backbone .onnx, preprocess .json, head .npz) inside an MLflow model folder."""

    def one(pattern: str) -> Path:
        found = sorted(p for p in model_dir.rglob(pattern) if p.is_file())
        if not found:
            raise FileNotFoundError(f"no {pattern} under {model_dir}")
        return found[0]

    onnx = one("*.onnx")
    head = one("*.npz")
    jsons = [
        p
        for p in model_dir.rglob("*.json")
        if p.is_file() and "input_size" in p.read_text(errors="ignore")
    ]
    if not jsons:
        raise FileNotFoundError(f"no preprocess config under {model_dir}")
    return onnx, sorted(jsons)[0], head


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url}/readyz not ready after {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server: its descendants' process groups first, then its own group."""
    import psutil

    if proc.poll() is not None:
        return
    groups: list[int] = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                pgid = os.getpgid(child.pid)
                if pgid not in groups and pgid != proc.pid and pgid != os.getpgrp():
                    groups.append(pgid)
    groups.append(proc.pid)  # started with start_new_session: its pid is its group id
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
        try:
            proc.wait(timeout=10)
            if sig == signal.SIGTERM:
                time.sleep(0.5)  # let the other groups finish too before the SIGKILL sweep
        except subprocess.TimeoutExpired:
            continue


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# --- the anchor server ------------------------------------------------------------------------


def anchor_server(port: int, model_dir: Path) -> None:
    """Starlette + uvicorn, eager PyTorch backbone + the champion's head, one image per call."""
    import threading

    import torch
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from pawpaw.model.backbone import create_backbone
    from pawpaw.model.heads import FittedHead
    from pawpaw.model.preprocess import PreprocessConfig, preprocess

    _, cfg_path, head_path = _model_files(model_dir)
    cfg = PreprocessConfig.from_dict(json.loads(cfg_path.read_text()))
    head = FittedHead.from_npz(head_path)
    model = create_backbone("tf_efficientnet_lite0", weights="package").eval()
    model.reset_classifier(0)
    lock = threading.Lock()  # one model call at a time, like a single-process seed service

    def score(image: bytes) -> float:
        x = torch.from_numpy(preprocess([image], cfg))
        with lock, torch.no_grad():
            features = model(x).numpy()
        return float(head.predict(features)[0])

    async def readyz(request: Request) -> JSONResponse:
        return JSONResponse({"ready": True})

    async def predict(request: Request) -> JSONResponse:
        form = await request.form()
        images = [await f.read() for f in form.getlist("images") if hasattr(f, "read")]
        if not images:
            return JSONResponse({"error": "no images"}, status_code=400)
        return JSONResponse([await run_in_threadpool(score, image) for image in images])

    app = Starlette(routes=[Route("/readyz", readyz), Route("/predict", predict, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- load generation --------------------------------------------------------------------------


async def _drive(url: str, photos: list[bytes], concurrency: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=REQUEST_TIMEOUT_S) as client:
        # Warm-up: one request per worker, not counted.
        with contextlib.suppress(httpx.HTTPError):
            await client.post(f"{url}/predict", files=[("images", ("p.jpg", photos[0]))])
        start = time.perf_counter()
        deadline = start + seconds

        async def worker(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < deadline:
                photo = photos[i % len(photos)]
                i += concurrency
                t0 = time.perf_counter()
                try:
                    r = await client.post(
                        f"{url}/predict", files=[("images", ("p.jpg", photo, "image/jpeg"))]
                    )
                    ok = r.status_code == 200 and len(r.json()) == 1
                except (httpx.HTTPError, ValueError):
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {
        "img_s": len(latencies) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
        "ok": len(latencies),
        "errors": errors,
        "elapsed_s": elapsed,
    }


def _raw_ort(model_dir: Path, photos: list[bytes], seconds: float) -> dict[str, float]:
    """img/s of the backbone graph + head on pre-decoded tensors, per batch size."""
    import onnxruntime as ort

    from pawpaw.model.heads import FittedHead
    from pawpaw.model.preprocess import PreprocessConfig, preprocess

    onnx_path, cfg_path, head_path = _model_files(model_dir)
    cfg = PreprocessConfig.from_dict(json.loads(cfg_path.read_text()))
    head = FittedHead.from_npz(head_path)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = preprocess(photos[:32], cfg)
    out = {}
    for bs in (1, 8, 32):
        batch = np.ascontiguousarray(x[:bs])
        head.predict(session.run(None, {name: batch})[0])  # warm-up
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            head.predict(session.run(None, {name: batch})[0])
            n += bs
        out[str(bs)] = n / (time.perf_counter() - start)
    return out


# --- building the champion --------------------------------------------------------------------


def _pool(workdir: Path, n: int, seed: int) -> Path:
    from pawpaw import synth

    pool_dir = workdir / f"pool-{n}-seed{seed}"
    synth.generate(pool_dir, n=n, seed=seed, progress=True)
    return pool_dir


def _build_bento(tmp: Path, pool_dir: Path, n: int, seed: int) -> tuple[str, Path]:
    """Train a head-mode ridge champion on the pool and export its bento: (tag, BENTOML_HOME)."""
    from lakefs_emulator import EmulatorServer

    from pawpaw import registry, versioning
    from pawpaw.data import kaggle
    from pawpaw.data.sampling import SampleSpec
    from pawpaw.export import export_champion
    from pawpaw.train import train

    pool = kaggle.read_dataset(pool_dir)
    home = tmp / "bentoml"
    with EmulatorServer(tmp / "lakefs") as server:
        settings = Settings(
            data_dir=tmp / "data",
            lakefs_endpoint=server.endpoint,
            lakefs_repo="bench",
            registered_model="bench-serving",
            mlflow_experiment="bench",
            bentoml_home=home,
        )
        spec = SampleSpec(
            n=min(n, len(pool)),
            seed=seed,
            val_fraction=settings.val_fraction,
            test_fraction=settings.test_fraction,
        )
        commit = versioning.commit_sample(settings, pool, spec, key="bench").commit_id
        result = train(settings, commit, mode="head", head_kinds=("ridge",))
        registry.promote(settings, result.version)
        exported = export_champion(settings)
    assert exported.bento_tag is not None
    return exported.bento_tag, home


def _mlflow_model_dir(bento_tag: str) -> Path:
    """The MLflow model folder of the bento's model (BENTOML_HOME must be set already)."""
    import bentoml

    bento = bentoml.get(bento_tag)
    if bento.info.models:
        model_tag = str(bento.info.models[0].tag)
    else:  # the service names its model in champion.json (written by pawpaw export)
        pin = next(Path(bento.path).rglob("champion.json"))
        model_tag = json.loads(pin.read_text())["model_tag"]
    model = bentoml.models.get(model_tag)
    return Path(model.path_of("mlflow_model"))


# --- main -------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--n", type=int, default=300, help="images in the synthetic pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="default: a fresh temp dir")
    parser.add_argument("--bento", help="serve this bento instead of training one")
    parser.add_argument("--bentoml-home", type=Path, help="BentoML store holding --bento")
    parser.add_argument(
        "--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "serving.json"
    )
    parser.add_argument("--anchor-server", nargs=2, metavar=("PORT", "MODEL_DIR"))
    args = parser.parse_args()
    if args.anchor_server:
        anchor_server(int(args.anchor_server[0]), Path(args.anchor_server[1]))
        return
    if args.bento and not args.bentoml_home:
        parser.error("--bento needs --bentoml-home")

    signal.signal(signal.SIGTERM, _on_sigterm)
    wall = time.perf_counter()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="pawpaw-bench-serving-") as tmp_name:
        tmp = Path(tmp_name)
        workdir = args.workdir or tmp
        try:
            pool_dir = _pool(workdir, args.n, args.seed)
            if args.bento:
                bento_tag, home = args.bento, args.bentoml_home
            else:
                bento_tag, home = _build_bento(tmp, pool_dir, args.n, args.seed)
            from pawpaw.export import bento_env

            env = {**os.environ, **bento_env(Settings(bentoml_home=home))}
            os.environ.update(bento_env(Settings(bentoml_home=home)))
            model_dir = _mlflow_model_dir(bento_tag)
            photos = [p.read_bytes() for p in sorted(pool_dir.rglob("*.jpg"))]
            print(f"bento {bento_tag}; {len(photos)} photos; model {model_dir}", flush=True)

            bento_port, anchor_port = _free_port(), _free_port()
            bentoml_bin = Path(sys.executable).with_name("bentoml")
            serve = [str(bentoml_bin), "serve", bento_tag, "--host", "127.0.0.1"]
            procs.append(
                subprocess.Popen(
                    [*serve, "--port", str(bento_port)],
                    env=env,
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                )
            )
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--anchor-server", str(anchor_port), str(model_dir)],
                    start_new_session=True,
                )
            )
            urls = {
                "bento": f"http://127.0.0.1:{bento_port}",
                "anchor": f"http://127.0.0.1:{anchor_port}",
            }
            for proc, url in zip(procs, urls.values(), strict=True):
                _wait_ready(url, proc, READY_TIMEOUT_S)
            print(f"servers ready: {urls}", flush=True)

            raw = _raw_ort(model_dir, photos, min(args.seconds, 5.0))
            results: dict[str, dict[str, Any]] = {name: {} for name in urls}
            for c in args.concurrency:
                for name, url in urls.items():
                    r = asyncio.run(_drive(url, photos, c, args.seconds))
                    results[name][str(c)] = r
                    print(
                        f"  {name:<6} c={c:<3} {r['img_s']:7.1f} img/s  "
                        f"p50 {_fmt(r['p50_ms'], '.0f')} ms  p99 {_fmt(r['p99_ms'], '.0f')} ms  "
                        f"errors {r['errors']}",
                        flush=True,
                    )
        finally:
            for proc in procs:
                _stop(proc)

    raw_best = max(raw.values())
    ratios = {
        str(c): {
            "bento_over_raw_ort": results["bento"][str(c)]["img_s"] / raw_best,
            "bento_over_anchor": (
                results["bento"][str(c)]["img_s"] / results["anchor"][str(c)]["img_s"]
                if results["anchor"][str(c)]["img_s"]
                else None
            ),
        }
        for c in args.concurrency
    }
    numbers = {
        "bento": bento_tag,
        "cores": os.cpu_count(),
        "seconds": args.seconds,
        "photos": len(photos),
        "raw_ort_img_s": raw,
        "raw_ort_best_img_s": raw_best,
        "servers": results,
        "ratios": ratios,
        "wall_s": time.perf_counter() - wall,
    }
    print()
    print(
        f"raw ONNX Runtime (backbone + head, pre-decoded): {raw_best:.1f} img/s best; "
        + ", ".join(f"bs {k}: {v:.1f}" for k, v in raw.items())
    )
    header = (
        f"{'conc':>4} | {'bento img/s':>11} {'p50':>6} {'p99':>6} {'err':>4} | "
        f"{'anchor img/s':>12} {'p50':>6} {'p99':>6} {'err':>4} | {'b/raw':>6} {'b/anchor':>8}"
    )
    print(header)
    print("-" * len(header))
    for c in args.concurrency:
        b, a, q = results["bento"][str(c)], results["anchor"][str(c)], ratios[str(c)]
        print(
            f"{c:>4} | {b['img_s']:>11.1f} {_fmt(b['p50_ms'], '.0f'):>6} "
            f"{_fmt(b['p99_ms'], '.0f'):>6} {b['errors']:>4} | {a['img_s']:>12.1f} "
            f"{_fmt(a['p50_ms'], '.0f'):>6} {_fmt(a['p99_ms'], '.0f'):>6} {a['errors']:>4} | "
            f"{q['bento_over_raw_ort']:>6.2f} {_fmt(q['bento_over_anchor'], '.2f'):>8}"
        )
    print("(latencies in ms; b/raw: bento img/s over the best raw ORT img/s)")
    print(f"wall time {numbers['wall_s']:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(numbers, indent=2, default=str) + "\n")
    print(f"numbers written to {args.out}")


if __name__ == "__main__":
    main()
