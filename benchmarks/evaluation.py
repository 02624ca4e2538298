"""Benchmark: how fast the pipeline's evaluation scores a test split (img/s).

    python benchmarks/evaluation.py [--n 500] [--workdir DIR]

Synthesizes ``--n`` photos (``pawpaw synth``), saves an MLflow pyfunc of the real backbone
(tf_efficientnet_lite0, packaged weights, exported to ONNX) with a linear head, loads it with
MLflow as evaluation does, and times ``pawpaw.evaluation._predict`` (the evaluation's scoring
path: fetching overlapped with the pyfunc's fast predictor) on all of them. For reference, the
plain sequential path on the same model (decode + preprocess a batch of 32, then one default
ONNX Runtime session, then the head; what the pyfunc did before) on the same photos; the scores
must be identical. Prints img/s of both and writes ``benchmarks/results/evaluation.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from pawpaw.config import PROJECT_ROOT, Settings


def _sequential(model_dir: Path, images: list[bytes]) -> np.ndarray:
    import onnxruntime as ort

    from pawpaw.model.heads import FittedHead
    from pawpaw.model.preprocess import PreprocessConfig, preprocess

    artifacts = model_dir / "artifacts"
    cfg = PreprocessConfig.from_dict(json.loads((artifacts / "preprocess.json").read_text()))
    head = FittedHead.from_npz(artifacts / "head.npz")
    session = ort.InferenceSession(
        str(next(artifacts.glob("*.onnx"))), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    out = [
        head.predict(session.run(None, {name: preprocess(images[s : s + 32], cfg)})[0])
        for s in range(0, len(images), 32)
    ]
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="test photos to score")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="default: a fresh temp dir")
    parser.add_argument(
        "--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "evaluation.json"
    )
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")

    import mlflow

    from pawpaw import synth
    from pawpaw.data import kaggle
    from pawpaw.evaluation import _predict
    from pawpaw.model.embed import Embedder
    from pawpaw.model.heads import FittedHead
    from pawpaw.model.pyfunc import save_model
    from pawpaw.schema import ID

    with tempfile.TemporaryDirectory(prefix="pawpaw-bench-eval-") as tmp_name:
        workdir = args.workdir or Path(tmp_name)
        pool_dir = workdir / f"pool-{args.n}-seed{args.seed}"
        synth.generate(pool_dir, n=args.n, seed=args.seed, progress=True)
        data = kaggle.read_dataset(pool_dir)
        embedder = Embedder.from_settings(Settings(data_dir=workdir / "data"))
        head = FittedHead.linear(np.random.default_rng(0).normal(0, 0.05, embedder.dim), 38.0)
        model_dir = Path(tmp_name) / "model"
        save_model(
            model_dir,
            onnx_path=embedder.onnx_path,
            preprocess_config=embedder.preprocess_config,
            head=head,
        )
        model = mlflow.pyfunc.load_model(str(model_dir))
        _predict(model, data, progress=False)  # warm-up (sessions, page cache)

        start = time.perf_counter()
        fast = _predict(model, data, progress=False)
        fast_s = time.perf_counter() - start

        images = [data.load(str(i)) for i in data.frame[ID]]
        start = time.perf_counter()
        plain = _sequential(model_dir, images)
        plain_s = time.perf_counter() - start
    if not np.array_equal(fast, plain):
        raise SystemExit(f"scores differ: max |diff| {np.abs(fast - plain).max():.3g}")
    n = len(fast)
    numbers = {
        "images": n,
        "cores": os.cpu_count(),
        "evaluation_img_s": n / fast_s,
        "sequential_img_s": n / plain_s,
        "speedup": plain_s / fast_s,
    }
    print(
        f"evaluation._predict: {n} images in {fast_s:.1f} s = {numbers['evaluation_img_s']:.1f} "
        f"img/s; plain sequential path {numbers['sequential_img_s']:.1f} img/s "
        f"({numbers['speedup']:.2f}x); scores identical"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(numbers, indent=2) + "\n")
    print(f"numbers written to {args.out}")


if __name__ == "__main__":
    main()
