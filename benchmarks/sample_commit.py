"""Benchmark: commit a 2,000-image monthly sample to lakeFS (the emulator, in a temp dir).

    python benchmarks/sample_commit.py [--pool DIR] [--n 2000] [--pool-size N] [--workers 16]

Without --pool it first generates a synthetic pool (--pool-size images, default n). It then
times: the first commit of an n-row sample (every image uploaded), the idempotent rerun of the
same key, and a second month with another seed (images already in lakeFS are skipped, new ones
uploaded, stale ones deleted), and reading a split back.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lakefs_emulator import EmulatorServer

from pawpaw import synth, versioning
from pawpaw.config import Settings
from pawpaw.data import kaggle
from pawpaw.data.sampling import SampleSpec


def _timed(label: str, n_images: int | None, fn):
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    rate = f", {n_images / seconds:.0f} images/s" if n_images else ""
    print(f"{label}: {seconds:.2f} s{rate}", flush=True)
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=Path, help="Kaggle-format folder (default: synthesize)")
    parser.add_argument("--n", type=int, default=2000, help="rows per sample")
    parser.add_argument("--pool-size", type=int, help="synthetic pool rows (default: n)")
    parser.add_argument("--workers", type=int, default=16, help="concurrent uploads")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="pawpaw-bench-") as tmp_name:
        tmp = Path(tmp_name)
        pool_dir = args.pool
        if pool_dir is None:
            pool_dir = tmp / "pool"
            rows = args.pool_size or args.n
            _timed(
                f"synthesize {rows} images", rows, lambda: synth.generate(pool_dir, n=rows, seed=0)
            )
        pool = kaggle.read_dataset(pool_dir)
        size_mb = sum(p.stat().st_size for p in (pool_dir / "train").iterdir()) / 2**20
        print(f"pool: {len(pool)} rows, {size_mb:.0f} MiB of images")

        with EmulatorServer(tmp / "lakefs") as server:
            settings = Settings(
                data_dir=tmp / "data",
                lakefs_endpoint=server.endpoint,
                lakefs_repo="bench",
                lakefs_upload_workers=args.workers,
            )
            client = versioning.make_client(settings)
            versioning.ensure_repository(client, settings)  # imports and repo setup not timed
            spec = SampleSpec(n=args.n, seed=1, val_fraction=0.15, test_fraction=0.25)
            first, _ = _timed(
                f"commit {args.n} images (all new, {args.workers} workers)",
                args.n,
                lambda: versioning.commit_sample(
                    settings, pool, spec, key="month-1", client=client, progress=True
                ),
            )
            assert first.created
            again, _ = _timed(
                "rerun same key (idempotent, no writes)",
                None,
                lambda: versioning.commit_sample(
                    settings, pool, spec, key="month-1", client=client
                ),
            )
            assert again.commit_id == first.commit_id and not again.created
            spec2 = SampleSpec(n=args.n, seed=2, val_fraction=0.15, test_fraction=0.25)
            second, _ = _timed(
                f"commit next month's {args.n} (overlapping images skipped)",
                args.n,
                lambda: versioning.commit_sample(
                    settings, pool, spec2, key="month-2", client=client, progress=True
                ),
            )
            entries = versioning.diff_commits(settings, first.commit_id, second.commit_id)
            print("diff month-1 -> month-2:", versioning.summarize_diff(entries))
            test = versioning.load_split(settings, second.commit_id, "test", client=client)
            _timed(
                f"read back {len(test)} test images",
                len(test),
                lambda: [test.load(i) for i in test.frame["Id"]],
            )


if __name__ == "__main__":
    main()
