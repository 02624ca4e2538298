"""Benchmark: generate a synthetic pool, then validate it with the Kaggle reader.

    python benchmarks/synth_speed.py [--n 2000] [--size 224 512] [--workers N] [--seed 0]

Prints seconds and images/s for `synth.generate` (all cores by default) and for
`kaggle.read_dataset` (CSV checks plus a decode of every image), and the pool's size on disk.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from pawpaw import synth
from pawpaw.data import kaggle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="images to generate")
    parser.add_argument("--size", type=int, nargs=2, default=(224, 512), help="min/max side")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pawpaw-synth-bench-") as tmp:
        out = Path(tmp) / "pool"
        start = time.perf_counter()
        synth.generate(out, args.n, args.seed, size_range=tuple(args.size), workers=args.workers)
        seconds = time.perf_counter() - start
        print(
            f"generate: {args.n} images of {args.size[0]}-{args.size[1]} px with "
            f"{args.workers} worker(s): {seconds:.2f} s, {args.n / seconds:.1f} images/s",
            flush=True,
        )
        size_mb = sum(p.stat().st_size for p in (out / "train").iterdir()) / 2**20
        print(f"pool on disk: {size_mb:.1f} MiB of JPEGs")

        start = time.perf_counter()
        data = kaggle.read_dataset(out)
        seconds = time.perf_counter() - start
        print(
            f"read_dataset (every image decoded): {len(data)} rows in {seconds:.2f} s, "
            f"{len(data) / seconds:.0f} images/s"
        )


if __name__ == "__main__":
    main()
