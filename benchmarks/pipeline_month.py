"""Benchmark: the monthly pipeline (the real DAG run by Airflow's scheduler) on 2,000 photos.

    python benchmarks/pipeline_month.py [--n 2000] [--workdir DIR]

Runs the embedded quick start (`pawpaw demo`'s code: the local stack, two months triggered
through the REST API and run by the scheduler) in a fresh data dir on free ports, without
serving, then stops the stack. Month 1 has no champion (sample -> evaluate -> train ->
evaluate -> promote -> export, drift skipped); month 2 comes from a shifted pool (sample ->
evaluate -> maybe retrain -> drift). Prints seconds per phase. Cold start: the backbone's ONNX
export and every embedding happen inside month 1.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="photos per month")
    parser.add_argument("--workdir", type=Path, default=None, help="data dir (default: temp)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pawpaw-bench-pipeline-"))
    # Settings are read from the environment: isolate everything from a running demo.
    os.environ.update({
        "PAWPAW_DATA_DIR": str(workdir),
        "PAWPAW_LAKEFS_ENDPOINT": f"http://127.0.0.1:{_free_port()}",
        "PAWPAW_BENTOML_HOME": str(workdir / "bentoml"),
        "PAWPAW_MONITORING_DB_URL": f"sqlite:///{workdir / 'monitoring.db'}",
        "PAWPAW_MLFLOW_PORT": str(_free_port()),
        "PAWPAW_AIRFLOW_PORT": str(_free_port()),
        "PAWPAW_SERVE_PORT": str(_free_port()),
    })  # fmt: skip
    from pawpaw.config import get_settings
    from pawpaw.demo import DemoOptions, run_demo

    opts = DemoOptions(sample_size=args.n, pool_size=args.n, serve=False, keep_running=False)
    started = time.perf_counter()
    timings = run_demo(get_settings(), opts).timings
    timings["total"] = time.perf_counter() - started
    print("\n== pipeline benchmark (2 cores)")
    for phase, seconds in timings.items():
        print(f"  {phase:8s} {seconds:7.1f} s")
    out = Path(__file__).parent / "results" / "pipeline_month.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"n": args.n, **timings}, indent=2))


if __name__ == "__main__":
    main()
