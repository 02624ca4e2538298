"""The drift report: NannyML's performance and drift plots as one self-contained HTML page."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

__all__ = ["report_html", "write_atomic"]


def report_html(drift: Any, performance: Any, run: dict[str, Any]) -> str:
    """One HTML page of NannyML's ``drift`` and ``performance`` plots, ``run`` its summary."""
    title = (
        f"Drift of {run['analysis_commit']} against {run['reference_commit']} "
        f"(model {run['model_version']})"
    )
    summary = (
        f"{run['n_reference']} reference rows, {run['n_analysis']} analysis rows; "
        f"RMSE {run['rmse_reference']:.2f} -> {run['rmse_analysis']:.2f}; "
        f"{run['n_alerts']} alerts in the analysis period"
        + (f" on: {run['drifted_columns']}" if run["drifted_columns"] else "")
    )
    # plotly.js is inlined once so the page works offline (e.g. as an MLflow artifact).
    performance_div = performance.plot().to_html(full_html=False, include_plotlyjs=True)
    drift_div = drift.plot(kind="drift").to_html(full_html=False, include_plotlyjs=False)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(summary)}</p>\n"
        f"<h2>Realized performance</h2>\n{performance_div}\n"
        f"<h2>Univariate drift</h2>\n{drift_div}\n</body></html>\n"
    )


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file: readers see the old page or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
