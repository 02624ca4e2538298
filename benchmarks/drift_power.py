"""Does the month verdict mean something? Calm months, a content shift, a photometric shift.

    python benchmarks/drift_power.py [--workdir DIR] [--calm 20] [--month-size 500]

Builds three synthetic pools with `pawpaw synth` (reused when present): a calm pool, a content
shift photo statistics cannot see (Collage=0.4, Group=0.5, Human=0.6) and a photometric one
(Blur=0.5). A ridge head on the frozen backbone's embeddings (the `head` train mode's model) is
trained on calm rows; its baseline (the reference) is ``--month-size`` other calm rows. Then
every month is measured with `pawpaw.drift.measure_drift`, exactly as the pipeline's drift
step does: ``--calm`` new draws from the calm pool, one content month, one blur month.

Prints, per month, the verdict, the methods that alerted, estimated and realized RMSE, and a
summary against the targets: calm alerts <= 1 in 20; both shifts alert (the content shift
through the embedding methods); estimated RMSE within 15 % of realized. Results also go to
benchmarks/results/drift_power.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
POOLS = {
    "calm": (4000, 1, []),
    "content": (600, 2, ["Collage=0.4", "Group=0.5", "Human=0.6"]),
    "blur": (600, 3, ["Blur=0.5"]),
}
EMBEDDING_METHODS = ("data_reconstruction", "domain_classifier")


def _pool(root: Path, name: str) -> Path:
    n, seed, shifts = POOLS[name]
    out = root / name
    if not (out / "train.csv").is_file():
        cmd = [
            sys.executable,
            "-m",
            "pawpaw",
            "synth",
            str(out),
            "--n",
            str(n),
            "--seed",
            str(seed),
        ]
        for shift in shifts:
            cmd += ["--shift", shift]
        subprocess.run(cmd, check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--calm", type=int, default=20, help="calm months to measure")
    parser.add_argument("--month-size", type=int, default=500, help="test rows per month")
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="pawpaw-drift-power-"))

    from pawpaw.config import Settings
    from pawpaw.data import kaggle
    from pawpaw.data.labeled import LabeledImages
    from pawpaw.drift import PREDICTION, measure_drift
    from pawpaw.drift.frames import drift_frame
    from pawpaw.model.embed import Embedder, EmbeddingCache
    from pawpaw.model.heads import fit_head
    from pawpaw.schema import ID, TARGET

    settings = Settings(data_dir=root / "data", monitoring_db_url=None)
    embedder = Embedder.from_settings(settings)
    cache = EmbeddingCache.for_embedder(embedder, settings)
    pools = {name: kaggle.read_dataset(_pool(root, name)) for name in POOLS}
    m = args.month_size

    def rows(name: str, idx: np.ndarray) -> LabeledImages:
        data = pools[name]
        return LabeledImages(
            data.frame.iloc[idx].reset_index(drop=True), data.load, data.content_keys, name
        )

    calm_n = len(pools["calm"].frame)
    train = rows("calm", np.arange(m, m + 1000))
    y_train = train.frame[TARGET].to_numpy(np.float64)
    head = fit_head("ridge", embedder.embed(train, cache=cache, progress=True), y_train)

    def frame(data: LabeledImages):
        scores = head.predict(embedder.embed(data, cache=cache))
        return drift_frame(settings, data, data.frame[[ID]].assign(**{PREDICTION: scores}))

    reference = frame(rows("calm", np.arange(m)))
    rng = np.random.default_rng(7)
    spare = np.arange(m + 1000, calm_n)
    months = [(f"calm-{i + 1:02d}", rows("calm", rng.choice(spare, m, replace=False)))
              for i in range(args.calm)]  # fmt: skip
    for name in ("content", "blur"):
        months.append(
            (name, rows(name, np.sort(rng.choice(len(pools[name].frame), m, replace=False))))
        )

    out = []
    for i, (name, data) in enumerate(months):
        started = time.perf_counter()
        result = measure_drift(
            settings,
            reference=reference,
            analysis=frame(data),
            reference_commit="reference",
            analysis_commit=name,
            model_version="1",
            month=f"{2027 + i // 12}-{i % 12 + 1:02d}",
        )
        alerted = [t for t in result.tests if t["alert"]]
        record = {
            "month": name,
            "alert": result.alert,
            "methods": sorted({t["method"] for t in alerted}),
            "reasons": list(result.reasons),
            "embedding_p": {
                t["method"]: t["p_value"] for t in result.tests if t["method"] in EMBEDDING_METHODS
            },
            "rmse": result.rmse_analysis,
            "estimated_rmse": result.estimated_rmse,
            "estimate_error": result.estimate_error,
            "seconds": time.perf_counter() - started,
        }
        out.append(record)
        print(
            f"{name:9s} alert={result.alert!s:5s} est {result.estimated_rmse:6.2f} real "
            f"{result.rmse_analysis:6.2f} ({result.estimate_error:5.1%}) "
            f"{record['seconds']:4.1f}s {'; '.join(result.reasons)[:150]}",
            flush=True,
        )

    calm = [r for r in out if r["month"].startswith("calm")]
    summary = {
        "calm_months": len(calm),
        "calm_alerts": sum(r["alert"] for r in calm),
        "content_alert": out[-2]["alert"],
        "content_embedding_alert": any(x in out[-2]["methods"] for x in EMBEDDING_METHODS),
        "blur_alert": out[-1]["alert"],
        "max_estimate_error": max(r["estimate_error"] for r in out),
        "median_seconds": float(np.median([r["seconds"] for r in out])),
    }
    print(json.dumps(summary, indent=2))
    results = HERE / "results" / "drift_power.json"
    results.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps({"summary": summary, "months": out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
