"""`pawpaw demo`: the embedded quick start, end to end on one machine without Docker.

1. generate a synthetic pool (once; reused afterwards),
2. start the local services: the lakeFS-API emulator (unless a real lakeFS is configured),
   an MLflow server (SQLite + local artifacts), the Airflow API server (UI);
   drift rows go to PostgreSQL when one is reachable, to SQLite otherwise,
3. run the monthly DAG for two months through Airflow (`airflow dags test`), the second month
   shifted (more blur, more humans),
4. serve the champion with `bentoml serve`, send it one photo, print the score and the URLs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

from pawpaw.config import PROJECT_ROOT, Settings
from pawpaw.pipeline import default_pool
from pawpaw.services import ServiceProcess, is_up, start_service, venv_tool

__all__ = ["DemoOptions", "DemoResult", "run_demo"]

LOCAL_POSTGRES = "postgresql+psycopg2://pawpaw:pawpaw@127.0.0.1:5432/pawpaw_monitoring"
# Month 2 comes from a shifted population: more blur, more humans, less appealing light.
SHIFT = ["Blur=0.4", "Human=0.4", "appeal=-0.5"]


@dataclass
class DemoOptions:
    sample_size: int  # photos drawn each month (`pawpaw demo` passes settings.sample_size)
    pool_size: int = 4000
    serve: bool = True
    serve_port: int = 3000
    airflow_ui: bool = True
    airflow_port: int = 8080
    mlflow_port: int = 5000
    keep_running: bool = True  # False: stop everything after the prediction check
    months: tuple[date, date] = field(default_factory=lambda: _last_two_months(date.today()))


@dataclass
class DemoResult:
    timings: dict[str, float] = field(default_factory=dict)  # seconds: synth, month1, month2
    score: float | None = None  # the served champion's answer to one photo


def _last_two_months(today: date) -> tuple[date, date]:
    this = today.replace(day=1)
    prev = (
        this.replace(year=this.year - 1, month=12)
        if this.month == 1
        else this.replace(month=this.month - 1)
    )
    return prev, this


def _step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _is_loopback(url: str) -> bool:
    return urlparse(url).hostname in {"127.0.0.1", "localhost", "::1"}


def _monitoring_url(settings: Settings) -> str:
    if settings.monitoring_db_url:
        return settings.monitoring_db_url
    import sqlalchemy as sa

    engine = sa.create_engine(LOCAL_POSTGRES, connect_args={"connect_timeout": 2})
    try:
        with engine.connect():
            return LOCAL_POSTGRES
    except Exception:
        return settings.drift_db_url  # SQLite under data_dir
    finally:
        engine.dispose()


def _start_services(settings: Settings, opts: DemoOptions) -> tuple[list[ServiceProcess], dict]:
    services: list[ServiceProcess] = []
    env: dict[str, str] = {}
    lakefs = settings.lakefs_endpoint.rstrip("/")
    health = f"{lakefs}/api/v1/healthcheck"
    if _is_loopback(lakefs):
        port = str(urlparse(lakefs).port or 8001)
        cmd = [
            venv_tool("pawpaw"),
            "lakefs-emulator",
            "--port",
            port,
            "--data",
            str(settings.data_dir / "lakefs"),
        ]
        services.append(
            start_service("lakefs-emulator", cmd, health_url=health, url=lakefs, settings=settings)
        )
    elif not is_up(health):
        raise RuntimeError(f"lakeFS at {lakefs} does not answer {health}")
    else:
        print(f"  lakeFS: {lakefs} (configured)")

    if settings.mlflow_tracking_uri:
        tracking = settings.mlflow_tracking_uri
        print(f"  MLflow: {tracking} (configured)")
    else:
        tracking = f"http://127.0.0.1:{opts.mlflow_port}"
        cmd = [
            venv_tool("mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(opts.mlflow_port),
            "--workers",
            "1",
            "--backend-store-uri",
            settings.tracking_uri,
            "--artifacts-destination",
            str(settings.data_dir / "mlartifacts"),
        ]
        services.append(
            start_service(
                "mlflow", cmd, health_url=f"{tracking}/health", url=tracking, settings=settings
            )
        )
    env["PAWPAW_MLFLOW_TRACKING_URI"] = tracking
    env["PAWPAW_MONITORING_DB_URL"] = _monitoring_url(settings)
    print(f"  drift store: {env['PAWPAW_MONITORING_DB_URL'].split('@')[-1]}")
    return services, env


def _airflow_env(settings: Settings, opts: DemoOptions) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(settings.data_dir / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__PORT": str(opts.airflow_port),
        "PYTHONPATH": os.pathsep.join(
            [str(PROJECT_ROOT / "plugins"), os.environ.get("PYTHONPATH", "")]
        ),
    }


def _airflow(args: list[str], env: dict[str, str]) -> None:
    cmd = [venv_tool("airflow"), *args]
    print("  $ airflow " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, **env})


def run_demo(settings: Settings, opts: DemoOptions) -> DemoResult:
    """Run the quick start; returns the seconds per phase and the served model's score."""
    started = time.monotonic()
    result = DemoResult()
    timings = result.timings
    pool = default_pool(settings)
    shifted = pool.with_name("shifted")
    _step(
        f"1/4 synthetic pools: {pool} ({opts.pool_size}), {shifted} ({opts.sample_size}, shifted)"
    )
    _synthesize(pool, opts.pool_size, seed=0, shift=[])
    _synthesize(shifted, opts.sample_size, seed=1, shift=SHIFT)
    timings["synth"] = time.monotonic() - started

    _step("2/4 local services")
    services, env = _start_services(settings, opts)
    airflow_env = {**env, **_airflow_env(settings, opts)}
    try:
        _airflow(["db", "migrate"], airflow_env)
        if opts.airflow_ui:
            services.append(
                start_service(
                    "airflow-api-server",
                    [
                        venv_tool("airflow"),
                        "api-server",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(opts.airflow_port),
                    ],
                    health_url=f"http://127.0.0.1:{opts.airflow_port}/api/v2/monitor/health",
                    url=f"http://127.0.0.1:{opts.airflow_port}",
                    settings=settings,
                    env=airflow_env,
                    timeout=180,
                )
            )

        for i, (month, source) in enumerate(zip(opts.months, (pool, shifted), strict=True), 1):
            _step(f"3/4 month {i}: {month:%Y-%m} from {source.name} (Airflow dags test)")
            t0 = time.monotonic()
            conf = {"sample_size": opts.sample_size, "pool": str(source)}
            _airflow(
                [
                    "dags",
                    "test",
                    "pawpularity_monthly",
                    month.isoformat(),
                    "--conf",
                    json.dumps(conf),
                ],
                airflow_env,
            )
            timings[f"month{i}"] = time.monotonic() - t0
            print(f"  month {i} took {timings[f'month{i}']:.0f}s")

        _step("4/4 serve the champion with BentoML")
        if opts.serve:
            service, result.score = _serve(settings, opts, env)
            services.append(service)
        _summary(settings, env, services, started)
        if opts.serve and opts.keep_running:
            print("\nServing. Press Ctrl-C to stop every service.", flush=True)
            while all(s.process is None or s.process.poll() is None for s in services):
                time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping…")
    finally:
        for service in reversed(services):
            service.stop()
    return result


def _synthesize(path: Path, n: int, *, seed: int, shift: list[str]) -> None:
    from pawpaw import synth

    if (path / "train.csv").exists():
        print(f"  reusing {path}")
        return
    synth.generate(path, n=n, seed=seed, shift=synth.Shift.parse(shift), progress=True)


def _serve(
    settings: Settings, opts: DemoOptions, env: dict[str, str]
) -> tuple[ServiceProcess, float]:
    from pawpaw import export

    exported = export.export_champion(settings.model_copy(update=_settings_update(env)))
    url = f"http://127.0.0.1:{opts.serve_port}"
    cmd = [venv_tool("bentoml"), "serve", exported.bento_tag,
           "--host", "127.0.0.1", "--port", str(opts.serve_port)]  # fmt: skip
    service = start_service(
        "bento",
        cmd,
        health_url=f"{url}/readyz",
        url=url,
        settings=settings,
        env=export.bento_env(settings),
        timeout=180,
    )
    image = next(iter(sorted((default_pool(settings) / "train").glob("*.jpg"))))
    score = export.request_score(url, image.read_bytes())
    print(f"  POST {url}/predict with {image.name} -> Pawpularity {score:.1f}")
    return service, score


def _settings_update(env: dict[str, str]) -> dict:
    return {
        "mlflow_tracking_uri": env["PAWPAW_MLFLOW_TRACKING_URI"],
        "monitoring_db_url": env["PAWPAW_MONITORING_DB_URL"],
    }


def _summary(settings: Settings, env: dict, services: list[ServiceProcess], started: float) -> None:
    _step(f"done in {time.monotonic() - started:.0f}s")
    for service in services:
        print(f"  {service.name:20s} {service.url}")
    print(f"  {'drift store':20s} {env['PAWPAW_MONITORING_DB_URL'].split('@')[-1]}")
    print(f"  {'python':20s} {sys.executable}")
