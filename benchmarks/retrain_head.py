"""Benchmark: head-mode retrain end to end, cold and with cached embeddings, and its quality.

    python benchmarks/retrain_head.py [--pool DIR] [--n 2000] [--seed 0] [--workdir DIR]

Without --pool it synthesizes the default pool (2,000 images, seed 0, 224-512 px; kept in
``--workdir`` so a rerun skips it). The sample is committed to lakeFS (the project's emulator,
in the work dir) and MLflow runs on SQLite there too (the embedded profile). Timed:

1. the backbone's one-time ONNX export;
2. ``train(mode="head")`` with a cold embedding cache (download + embed + fit + log + register);
3. the same retrain with every embedding cached (a second registered model, so idempotency
   does not short-circuit it);
4. evaluating the champion on the test split.

Quality: test RMSE against the synthetic generator's noise floor (on the test rows, from
``synth_truth.csv``, and over the whole pool, from ``synth.json``) and the mean predictor.
Targets: RMSE <= 1.15 x noise floor, clearly below the mean predictor. Peak RSS from
``resource.getrusage`` (target <= 4 GiB). Results are also written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from lakefs_emulator import EmulatorServer

from pawpaw import registry, synth, versioning
from pawpaw.config import PROJECT_ROOT, Settings
from pawpaw.data import kaggle
from pawpaw.data.sampling import SampleSpec
from pawpaw.evaluation import evaluate, load_predictions
from pawpaw.train import train


def _peak_rss_gib() -> dict[str, float]:
    # ru_maxrss is in KiB on Linux.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return {"self": own, "children": children}


def _timed(label: str, fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    print(f"== {label}: {seconds:.1f} s", flush=True)
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, help="Kaggle-format folder (default: synthesize)")
    parser.add_argument("--n", type=int, default=2000, help="rows in the sample (and pool)")
    parser.add_argument("--seed", type=int, default=0, help="generator and sample seed")
    parser.add_argument("--workdir", type=Path, help="keeps the synthetic pool between runs")
    parser.add_argument(
        "--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "retrain_head.json"
    )
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.gettempdir()) / "pawpaw-bench-retrain"
    pool_dir = args.pool
    numbers: dict[str, Any] = {"n": args.n, "seed": args.seed, "cores": os.cpu_count()}
    if pool_dir is None:
        pool_dir = workdir / f"pool-{args.n}-seed{args.seed}"
        _, numbers["synthesize_s"] = _timed(
            f"synthesize {args.n} images (skipped when present)",
            lambda: synth.generate(pool_dir, n=args.n, seed=args.seed, progress=True),
        )
    pool = kaggle.read_dataset(pool_dir)
    print(f"pool: {len(pool)} rows at {pool_dir}")

    with tempfile.TemporaryDirectory(prefix="run-", dir=workdir) as tmp_name:
        tmp = Path(tmp_name)
        with EmulatorServer(tmp / "lakefs") as server:
            settings = Settings(
                data_dir=tmp / "data",
                lakefs_endpoint=server.endpoint,
                lakefs_repo="bench",
                registered_model="bench-cold",
                mlflow_experiment="bench",
            )
            spec = SampleSpec(
                n=min(args.n, len(pool)),
                seed=args.seed,
                val_fraction=settings.val_fraction,
                test_fraction=settings.test_fraction,
            )
            commit, numbers["commit_s"] = _timed(
                "commit the sample to lakeFS",
                lambda: versioning.commit_sample(settings, pool, spec, key="bench").commit_id,
            )
            numbers["sizes"] = spec.sizes

            from pawpaw.model.embed import Embedder

            _, numbers["export_s"] = _timed(
                "backbone ONNX export (one-time)", lambda: Embedder.from_settings(settings)
            )
            cold, numbers["retrain_cold_s"] = _timed(
                "retrain, cold embedding cache", lambda: train(settings, commit, mode="head")
            )
            registry.promote(settings, cold.version)
            warm_settings = settings.model_copy(update={"registered_model": "bench-warm"})
            warm, numbers["retrain_warm_s"] = _timed(
                "retrain, cached embeddings", lambda: train(warm_settings, commit, mode="head")
            )
            result, numbers["evaluate_s"] = _timed(
                "evaluate the champion on the test split", lambda: evaluate(settings, commit)
            )
            assert result is not None
            preds = load_predictions(settings, cold.version, commit)

    # What the best possible predictor (the noise-free score) gets on exactly the test rows.
    floors = synth.split_noise_floors(pool_dir, {"test": preds})
    floor_test = floors["test"] if floors is not None else None
    synth_doc = json.loads((pool_dir / "synth.json").read_text())
    floor_pool = synth.pool_noise_floor(synth_doc)
    floor = floor_test if floor_test is not None else floor_pool

    numbers.update(
        {
            "head": cold.head,
            "candidates_val_rmse": cold.candidates,
            "val_rmse": cold.val_rmse,
            "train_seconds_cold": cold.train_seconds,
            "train_seconds_warm": warm.train_seconds,
            "test_rmse": result.rmse,
            "test_mae": result.mae,
            "test_r2": result.r2,
            "mean_predictor_rmse": result.mean_rmse,
            "noise_floor_test_rows": floor_test,
            "noise_floor_pool": floor_pool,
            "rmse_over_floor": result.rmse / floor if floor else None,
            "rmse_over_mean": result.ratio,
            "peak_rss_gib": _peak_rss_gib(),
        }
    )
    print()
    print(f"sample            {numbers['sizes']} (commit {commit[:12]})")
    print(f"export (once)     {numbers['export_s']:.1f} s")
    print(
        f"retrain cold      {numbers['retrain_cold_s']:.1f} s end to end "
        f"({cold.train_seconds:.1f} s load+embed+fit)"
    )
    print(
        f"retrain warm      {numbers['retrain_warm_s']:.1f} s end to end "
        f"({warm.train_seconds:.1f} s load+embed+fit)"
    )
    print(f"evaluate          {numbers['evaluate_s']:.1f} s ({result.n_test} test images)")
    print(f"best head         {cold.head}  (val RMSE {cold.val_rmse:.3f})")
    for name, value in cold.candidates.items():
        print(f"  candidate       {name:<44} val RMSE {value:.3f}")
    print(f"test RMSE         {result.rmse:.3f}   MAE {result.mae:.3f}   R^2 {result.r2:.3f}")
    print(f"mean predictor    {result.mean_rmse:.3f}   (ratio {result.ratio:.3f})")
    if floor_test is not None:
        print(f"noise floor       {floor_test:.3f} on the test rows, {floor_pool:.3f} on the pool")
    if floor:
        verdict = "OK" if result.rmse <= 1.15 * floor else "MISSED"
        print(f"RMSE / floor      {result.rmse / floor:.3f}  (target <= 1.15: {verdict})")
    rss = numbers["peak_rss_gib"]
    verdict = "OK" if max(rss.values()) <= 4 else "MISSED"
    print(
        f"peak RSS          {rss['self']:.2f} GiB (children {rss['children']:.2f} GiB; "
        f"target <= 4: {verdict})"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(numbers, indent=2, default=str) + "\n")
    print(f"numbers written to {args.out}")


if __name__ == "__main__":
    main()
