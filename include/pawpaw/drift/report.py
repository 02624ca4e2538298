"""The drift report: the month's verdict, its tests and NannyML's chunk plots as one HTML page."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

__all__ = ["report_html", "write_atomic"]


def report_html(results: dict[str, Any], run: dict[str, Any], tests: list[Any]) -> str:
    """One self-contained page: ``run`` (a drift_runs row), ``tests`` (MonthTest), and the
    plots of NannyML's chunk ``results`` (univariate, reconstruction, performance)."""
    title = (
        f"Drift of {run['analysis_commit']} ({run['month']:%Y-%m}) against "
        f"{run['reference_commit']} (model {run['model_version']})"
    )
    verdict = f"ALERT: {run['reasons']}" if run["alert"] else "no drift alert"
    summary = (
        f"{verdict}. {run['n_reference']} reference rows, {run['n_analysis']} rows this month; "
        f"RMSE reference {run['rmse_reference']:.2f}, realized {run['rmse_analysis']:.2f}, "
        f"estimated {run['estimated_rmse']:.2f}"
    )
    rows = "".join(
        f"<tr><td>{html.escape(t.column)}</td><td>{t.method}</td><td>{t.statistic:.4g}</td>"
        f"<td>{t.p_value:.3g}</td><td>{t.alpha:.3g}</td><td>{'ALERT' if t.alert else ''}</td></tr>"
        for t in sorted(tests, key=lambda t: t.p_value)
    )
    # plotly.js is inlined once so the page works offline (e.g. as an MLflow artifact).
    plots = [
        ("Realized and estimated performance", results["performance"].plot()),
        ("Reconstruction error of the embeddings", results["reconstruction"].plot()),
        ("Univariate drift per chunk", results["univariate"].plot(kind="drift")),
    ]
    divs = "\n".join(
        f"<h2>{html.escape(name)}</h2>\n"
        + figure.to_html(full_html=False, include_plotlyjs=(i == 0))
        for i, (name, figure) in enumerate(plots)
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(summary)}</p>\n"
        "<h2>Month-level tests (Holm-adjusted)</h2>\n<table border='1'><tr><th>column</th>"
        "<th>method</th><th>statistic</th><th>p</th><th>level</th><th>verdict</th></tr>"
        f"{rows}</table>\n{divs}\n</body></html>\n"
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
