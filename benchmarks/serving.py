"""Benchmark: the BentoML service's /predict against a seed-style server and raw ONNX Runtime.

    python benchmarks/serving.py [--seconds 15] [--n 300] [--workdir DIR]
    python benchmarks/serving.py --bento TAG --bentoml-home DIR   # serve an existing bento
    python benchmarks/serving.py --url http://HOST:PORT [--bento TAG --bentoml-home DIR]

Without ``--bento`` it synthesizes a small pool (``--n`` images), commits it to the lakeFS
emulator, trains a head-mode champion (ridge head) with MLflow on SQLite, and exports it as a
bento, all in a temp work dir. Then, on free ports of 127.0.0.1 only:

- ``bentoml serve TAG`` (the service of ``bentos/service.py``; adaptive batching);
- an anchor "seed-style" server started by this file (``--anchor-server PORT MODEL_DIR``):
  Starlette + uvicorn, eager PyTorch timm ``tf_efficientnet_lite0`` with the packaged weights
  (eval, no_grad) and the champion's own head, one image per model call.

``--url`` drives a service that is already running (e.g. the GPU bento of
scripts/gpu_check.sh) instead of starting one; with ``--bento``/``--bentoml-home`` as well, the
anchor and raw ONNX Runtime run on that bento's model, else only the URL is measured.

Both are driven with the same JPEGs of the pool by an asyncio closed-loop load generator
(one image per request, keep-alive connections, plain asyncio streams so that it takes little
of the CPU it shares with the servers) at each ``--concurrency`` for ``--seconds`` each. Reported:
img/s, p50/p99 latency (ms) and errors for both servers; raw ONNX Runtime img/s on the same
backbone graph plus head on pre-decoded tensors: one default session (all cores to one run) at
batch sizes 1, 8, 32, whose best is the issue's yardstick, and two one-thread runs in parallel
at batch 1 (how the service's predictor uses the CPU); and the ratios bento/raw-ORT (both) and
bento/anchor. A table goes to stdout, JSON to
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


_BOUNDARY = "pawpawbenchboundary"


def _multipart(photo: bytes) -> bytes:
    """A /predict body with one photo in the field ``images``."""
    head = (
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="images"; '
        'filename="p.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    )
    return head.encode() + photo + f"\r\n--{_BOUNDARY}--\r\n".encode()


class _Connection:
    """One keep-alive HTTP/1.1 connection: POST a prepared body, read the whole answer.

    The load generator shares the 2 cores with the servers, so it is plain asyncio streams
    (about a tenth of a millisecond of CPU per request, where an httpx client spends 2-3 ms)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status = int((await self.reader.readuntil(b"\r\n")).split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip().lower()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        else:  # chunked
            parts = []
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            await self.reader.readexactly(2)
            data = b"".join(parts)
        if headers.get("connection") == "close":
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _drive(url: str, photos: list[bytes], concurrency: int, seconds: float) -> dict:
    """Closed loop: ``concurrency`` clients, each posting one photo, awaiting the answer,
    posting the next; for ``seconds``. Counted OK: HTTP 200 with exactly one score."""
    from urllib.parse import urlsplit

    where = urlsplit(url)
    host, port, base = where.hostname or "127.0.0.1", where.port or 80, where.path.rstrip("/")
    content_type = f"multipart/form-data; boundary={_BOUNDARY}"
    bodies = [_multipart(photo) for photo in photos]
    latencies: list[float] = []
    errors = 0

    async def post(conn: _Connection, body: bytes) -> bool:
        try:
            status, data = await asyncio.wait_for(
                conn.post(f"{base}/predict", body, content_type), REQUEST_TIMEOUT_S
            )
            return status == 200 and len(json.loads(data)) == 1
        except (OSError, ValueError, EOFError, asyncio.IncompleteReadError, TimeoutError):
            conn.close()
            return False

    connections = [_Connection(host, port) for _ in range(concurrency)]
    await asyncio.gather(*(post(c, bodies[0]) for c in connections))  # warm-up, not counted
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(k: int) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < deadline:
            body = bodies[i % len(bodies)]
            i += concurrency
            t0 = time.perf_counter()
            if await post(connections[k], body):
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - start
    for conn in connections:
        conn.close()
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


def _raw_ort_parallel(model_dir: Path, photos: list[bytes], seconds: float, runs: int) -> float:
    """img/s of ``runs`` one-thread ONNX Runtime runs in parallel threads, batch 1 (+ head)."""
    import threading

    import onnxruntime as ort

    from pawpaw.model.heads import FittedHead
    from pawpaw.model.preprocess import PreprocessConfig, preprocess

    onnx_path, cfg_path, head_path = _model_files(model_dir)
    cfg = PreprocessConfig.from_dict(json.loads(cfg_path.read_text()))
    head = FittedHead.from_npz(head_path)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = preprocess(photos[:1], cfg)
    head.predict(session.run(None, {name: x})[0])  # warm-up
    counts = [0] * runs
    deadline = time.perf_counter() + seconds

    def loop(k: int) -> None:
        while time.perf_counter() < deadline:
            head.predict(session.run(None, {name: x})[0])
            counts[k] += 1

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(runs)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


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


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--n", type=int, default=300, help="images in the synthetic pool")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="default: a fresh temp dir")
    parser.add_argument("--bento", help="serve this bento instead of training one")
    parser.add_argument("--bentoml-home", type=Path, help="BentoML store holding --bento")
    parser.add_argument("--url", help="drive this running service instead of starting one")
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
    raw: dict[str, float] = {}
    raw_parallel: float | None = None
    with tempfile.TemporaryDirectory(prefix="pawpaw-bench-serving-") as tmp_name:
        tmp = Path(tmp_name)
        workdir = args.workdir or tmp
        try:
            pool_dir = _pool(workdir, args.n, args.seed)
            photos = [p.read_bytes() for p in sorted(pool_dir.rglob("*.jpg"))]
            urls: dict[str, str] = {}
            model_dir: Path | None = None
            bento_tag, home = args.bento, args.bentoml_home
            if not args.url and not args.bento:
                bento_tag, home = _build_bento(tmp, pool_dir, args.n, args.seed)
            if bento_tag:
                from pawpaw.export import bento_env

                env = {**os.environ, **bento_env(Settings(bentoml_home=home))}
                os.environ.update(bento_env(Settings(bentoml_home=home)))
                model_dir = _mlflow_model_dir(bento_tag)
            print(f"bento {bento_tag or args.url}; {len(photos)} photos; model {model_dir}")

            if args.url:
                urls["bento"] = args.url.rstrip("/")
            else:
                port = _free_port()
                serve = [str(Path(sys.executable).with_name("bentoml")), "serve", bento_tag]
                cmd = [*serve, "--host", "127.0.0.1", "--port", str(port)]
                procs.append(
                    subprocess.Popen(
                        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL
                    )
                )
                urls["bento"] = f"http://127.0.0.1:{port}"
                _wait_ready(urls["bento"], procs[-1], READY_TIMEOUT_S)
            if model_dir is not None:
                port = _free_port()
                cmd = [sys.executable, __file__, "--anchor-server", str(port), str(model_dir)]
                procs.append(subprocess.Popen(cmd, start_new_session=True))
                urls["anchor"] = f"http://127.0.0.1:{port}"
                _wait_ready(urls["anchor"], procs[-1], READY_TIMEOUT_S)
            print(f"servers ready: {urls}", flush=True)

            if model_dir is not None:
                raw_seconds = min(args.seconds, 5.0)
                raw = _raw_ort(model_dir, photos, raw_seconds)
                raw_parallel = _raw_ort_parallel(model_dir, photos, raw_seconds, runs=2)
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

    raw_best = max(raw.values()) if raw else None
    anchor = results.get("anchor", {})
    ratios = {
        str(c): {
            "bento_over_raw_ort": _ratio(results["bento"][str(c)]["img_s"], raw_best),
            "bento_over_raw_ort_parallel": _ratio(results["bento"][str(c)]["img_s"], raw_parallel),
            "bento_over_anchor": _ratio(
                results["bento"][str(c)]["img_s"], anchor.get(str(c), {}).get("img_s")
            ),
        }
        for c in args.concurrency
    }
    numbers = {
        "bento": bento_tag or args.url,
        "cores": os.cpu_count(),
        "seconds": args.seconds,
        "photos": len(photos),
        "raw_ort_img_s": raw,
        "raw_ort_best_img_s": raw_best,
        "raw_ort_parallel_img_s": raw_parallel,
        "servers": results,
        "ratios": ratios,
        "wall_s": time.perf_counter() - wall,
    }
    print()
    if raw:
        print(
            f"raw ONNX Runtime (backbone + head, pre-decoded), one default session: "
            f"{raw_best:.1f} img/s best; " + ", ".join(f"bs {k}: {v:.1f}" for k, v in raw.items())
        )
        print(f"raw ONNX Runtime, two one-thread runs in parallel (bs 1): {raw_parallel:.1f} img/s")
    header = (
        f"{'conc':>4} | {'bento img/s':>11} {'p50':>6} {'p99':>6} {'err':>4} | "
        f"{'anchor img/s':>12} {'p50':>6} {'p99':>6} {'err':>4} | {'b/raw':>6} {'b/raw2':>6} "
        f"{'b/anchor':>8}"
    )
    print(header)
    print("-" * len(header))
    empty: dict[str, Any] = {"img_s": None, "p50_ms": None, "p99_ms": None, "errors": None}
    for c in args.concurrency:
        b, q = results["bento"][str(c)], ratios[str(c)]
        a = anchor.get(str(c), empty)
        print(
            f"{c:>4} | {b['img_s']:>11.1f} {_fmt(b['p50_ms'], '.0f'):>6} "
            f"{_fmt(b['p99_ms'], '.0f'):>6} {b['errors']:>4} | {_fmt(a['img_s'], '.1f'):>12} "
            f"{_fmt(a['p50_ms'], '.0f'):>6} {_fmt(a['p99_ms'], '.0f'):>6} "
            f"{_fmt(a['errors'], 'd'):>4} | {_fmt(q['bento_over_raw_ort'], '.2f'):>6} "
            f"{_fmt(q['bento_over_raw_ort_parallel'], '.2f'):>6} "
            f"{_fmt(q['bento_over_anchor'], '.2f'):>8}"
        )
    print(
        "(latencies in ms; b/raw: bento img/s over the best raw ORT img/s of one default session;"
        " b/raw2: over two parallel one-thread runs)"
    )
    print(f"wall time {numbers['wall_s']:.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(numbers, indent=2, default=str) + "\n")
    print(f"numbers written to {args.out}")


if __name__ == "__main__":
    main()
