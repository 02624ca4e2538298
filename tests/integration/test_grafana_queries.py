"""Every SQL query Grafana runs, executed against real PostgreSQL holding drift runs.

The database holds three months: the latest measured for real (``measure_drift`` on a shifted
month, the version-4 champion's first), and two earlier months of version 3 written through
the store with values chosen to cover what one real run cannot (a calm month, a promotion,
an estimate on either side of the limit).
The queries come from the provisioned files themselves: the dashboard's panels, its template
variables and annotations, and the alert rules. Grafana's macros and variables are expanded
the way its PostgreSQL data source does (``$__timeFilter(x)`` becomes ``x BETWEEN '…' AND '…'``,
a multi-value variable a list of quoted literals); anything left with a ``$`` fails. Each
query must run and return rows in the shape its panel or rule needs, and the ones that decide
something return the right values: the month verdict, the promotions, and whether each alert
rule fires (evaluated as Grafana evaluates tabular data: one numeric column is the value, the
text columns are the labels, the threshold expression decides).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from pawpaw.config import Settings
from pawpaw.drift import DriftResult, measure_drift, read_drift_runs, read_drift_tests
from pawpaw.drift.store import KEY_COLUMNS, replace_rows
from tests.fixtures.postgres import fresh_schema
from tests.unit.test_drift import drift_frame

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "pawpaw-drift.json"
ALERTING = ROOT / "docker" / "grafana" / "provisioning" / "alerting"
DATASOURCE_UID = "pawpaw-monitoring"
# The dashboard's time picker in these tests: wide enough for every stored month.
WHOLE_RANGE = (datetime(2000, 1, 1), datetime(2100, 1, 1))

# PostgreSQL type OIDs, as the driver reports them in cursor.description.
_NUMERIC_OIDS = {20, 21, 23, 700, 701, 1700}  # int8, int2, int4, float4, float8, numeric
_TEXT_OIDS = {25, 1043}  # text, varchar
_TIME_OIDS = {1114, 1184}  # timestamp, timestamptz


# --- the queries, from the provisioned files ------------------------------------------------


@dataclass(frozen=True)
class GrafanaQuery:
    where: str  # e.g. "panel 3 (RMSE per month…) A", "variable $column", "rule <uid> A"
    sql: str
    kind: str  # "table", "time_series", "variable", "annotation", "alert"


@cache
def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


@cache
def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in sorted(ALERTING.glob("*.yaml")):
        for group in yaml.safe_load(path.read_text()).get("groups", []):
            rules += group["rules"]
    return rules


def _ours(datasource: Mapping[str, Any] | None) -> bool:
    return bool(datasource) and datasource.get("uid") == DATASOURCE_UID


def grafana_queries() -> list[GrafanaQuery]:
    """Every rawSql Grafana sends to the monitoring database."""
    dash = _dashboard()
    found = [
        GrafanaQuery(f"panel {p['id']} ({p['title']}) {t['refId']}", t["rawSql"], t["format"])
        for p in dash["panels"]
        for t in p.get("targets", [])
    ]
    found += [
        GrafanaQuery(f"variable ${v['name']}", v["query"], "variable")
        for v in dash["templating"]["list"]
        if v["type"] == "query"
    ]
    found += [
        GrafanaQuery(f"annotation {a['name']}", a["target"]["rawSql"], "annotation")
        for a in dash["annotations"]["list"]
        if _ours(a.get("datasource"))
    ]
    found += [
        GrafanaQuery(f"rule {r['uid']} {q['refId']}", q["model"]["rawSql"], "alert")
        for r in _rules()
        for q in r["data"]
        if q["datasourceUid"] == DATASOURCE_UID
    ]
    return found


def _query(where_prefix: str) -> GrafanaQuery:
    (match,) = [q for q in grafana_queries() if q.where.startswith(where_prefix)]
    return match


def _panel_query(title_start: str) -> GrafanaQuery:
    (panel,) = [p for p in _dashboard()["panels"] if p["title"].startswith(title_start)]
    return _query(f"panel {panel['id']} ")


# --- Grafana's macros and variables -----------------------------------------------------------


def _grafana_time(t: datetime) -> str:
    return f"'{t:%Y-%m-%dT%H:%M:%SZ}'"


# Grafana's own pattern (pkg/tsdb/grafana-postgresql-datasource/macros.go): the arguments end
# at the first ')', so a macro cannot take an expression such as min(month).
_MACRO = re.compile(r"\$(\w+)\(([^)]*)\)")


def _expand_macros(sql: str, start: datetime, end: datetime) -> str:
    """The PostgreSQL data source's macros, expanded as its backend does."""

    def one(m: re.Match[str]) -> str:
        name, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN {_grafana_time(start)} AND {_grafana_time(end)}"
        if name == "__timeFrom":
            return _grafana_time(start)
        if name == "__timeTo":
            return _grafana_time(end)
        raise AssertionError(f"macro ${name} is not expanded by this test")

    return _MACRO.sub(one, sql)


_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]")


def _sql_list(values: Sequence[str]) -> str:
    """A multi-value variable in a SQL data source: each value quoted, comma-separated."""
    return ",".join("'" + v.replace("'", "''") + "'" for v in values)


def expand(
    sql: str,
    variables: Mapping[str, Sequence[str]],
    time_range: tuple[datetime, datetime] = WHOLE_RANGE,
) -> str:
    expanded = _expand_macros(sql, *time_range)

    def one(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        assert name in variables, f"${name} is not a dashboard variable (or not defined yet)"
        return _sql_list(variables[name])

    expanded = _VARIABLE.sub(one, expanded)
    assert "$" not in expanded, f"unexpanded `$` left in:\n{expanded}"
    return expanded


def test_expander_matches_grafana():
    start, end = datetime(2026, 1, 1), datetime(2026, 3, 1, 12)
    sql = "WHERE $__timeFilter(r.month) AND v IN ($v) AND w IN (${w})"
    assert expand(sql, {"v": ["3", "4"], "w": ["o'k"]}, (start, end)) == (
        "WHERE r.month BETWEEN '2026-01-01T00:00:00Z' AND '2026-03-01T12:00:00Z'"
        " AND v IN ('3','4') AND w IN ('o''k')"
    )
    # As in Grafana, an argument stops at the first ')': the SQL comes out broken.
    nested = expand("HAVING $__timeFilter(min(month))", {}, (start, end))
    assert nested.startswith("HAVING min(month BETWEEN")
    with pytest.raises(AssertionError, match="not a dashboard variable"):
        expand("WHERE v IN ($nope)", {})
    with pytest.raises(AssertionError, match="not expanded"):
        expand("WHERE $__unixEpochFilter(t)", {})


# --- the database ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    columns: list[str]
    oids: list[int]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def run_sql(url: str, sql: str) -> Result:
    """Through the driver's own cursor, without parameters, as Grafana sends it."""
    engine = sa.create_engine(url)
    try:
        conn = engine.raw_connection()
        try:
            cur = conn.cursor()
            cur.execute(sql)
            columns = [d[0] for d in cur.description]
            oids = [d[1] for d in cur.description]
            return Result(columns, oids, [tuple(r) for r in cur.fetchall()])
        finally:
            conn.close()
    finally:
        engine.dispose()


def resolve_variables(
    url: str,
    selected: Mapping[str, Sequence[str]] | None = None,
    time_range: tuple[datetime, datetime] = WHOLE_RANGE,
) -> dict[str, list[str]]:
    """Each variable's options, in dashboard order (a later one may use an earlier one); the
    value is the selection given, else All (every option)."""
    values: dict[str, list[str]] = {}
    for var in _dashboard()["templating"]["list"]:
        result = run_sql(url, expand(var["query"], values, time_range))
        options = [str(row[0]) for row in result.rows]
        values[var["name"]] = list((selected or {}).get(var["name"], options))
    return values


def _key(analysis_commit: str, reference_commit: str, model_version: str) -> dict[str, str]:
    return dict(zip(KEY_COLUMNS, (analysis_commit, reference_commit, model_version), strict=True))


def store_run(
    url: str,
    *,
    model_version: str,
    month: datetime,
    alert: bool,
    reasons: str = "",
    estimated_rmse: float = 19.0,
    rmse_limit: float | None = 21.0,
    analysis_commit: str | None = None,
) -> dict[str, Any]:
    """One drift run's rows in the store's own layout, with values we choose."""
    key = _key(analysis_commit or f"commit-{month:%Y-%m}", f"ref-{model_version}", model_version)
    base = {**key, "month": month}
    realized = 20.0
    run = {
        **base,
        "n_reference": 500,
        "n_analysis": 480,
        "alert": alert,
        "reasons": reasons,
        "rmse_reference": 19.5,
        "rmse_analysis": realized,
        "mae_analysis": 15.0,
        "estimated_rmse": estimated_rmse,
        "estimated_mae": 14.5,
        "estimate_error": abs(estimated_rmse - realized) / realized,
        "rmse_limit": rmse_limit,
    }
    tests = [
        {
            **base,
            "method": method,
            "column_name": column,
            "statistic": 0.2,
            "p_value": p,
            "alpha": 0.01 / (i + 1),
            "alert": alert and p < 0.01,
        }
        for i, (method, column, p) in enumerate(
            [
                ("kolmogorov_smirnov", "brightness", 0.001 if alert else 0.4),
                ("chi2", "Blur", 0.3),
                ("data_reconstruction", "embeddings", 0.2),
            ]
        )
    ]
    metrics = []
    for chunk in range(3):
        start = month + timedelta(days=10 * chunk)
        end = start + timedelta(days=10)
        for column, metric, value, upper in [
            ("brightness", "kolmogorov_smirnov", 0.1 + 0.05 * chunk, 0.2),
            ("embeddings", "reconstruction_error", 1.0 + 0.1 * chunk, 1.5),
            ("performance", "rmse", realized, None),
            ("performance", "estimated_rmse", estimated_rmse, None),
        ]:
            metrics.append(
                {
                    **base,
                    "chunk_index": chunk,
                    "chunk_start": start,
                    "chunk_end": end,
                    "timestamp": start + (end - start) / 2,
                    "column_name": column,
                    "metric": metric,
                    "value": value,
                    "lower_threshold": None,
                    "upper_threshold": upper,
                    "alert": upper is not None and value > upper,
                }
            )
    replace_rows(url, key, run, tests, metrics)
    return run


# Two model versions: "3" served January and February (rows we choose), "4" was promoted for
# March, measured for real: a darker, blurrier month than its reference.
JANUARY, FEBRUARY, MARCH = datetime(2026, 1, 1), datetime(2026, 2, 1), datetime(2026, 3, 1)


def measure_march(url: str, data_dir: Path, rmse_limit: float | None) -> DriftResult:
    """A real drift run (pawpaw.drift.measure_drift) of version 4's first month."""
    settings = Settings(data_dir=data_dir, monitoring_db_url=url)
    return measure_drift(
        settings,
        reference=drift_frame(0),
        analysis=drift_frame(2, shift=1.0, prefix="b"),
        reference_commit="ref-4",
        analysis_commit="commit-2026-03",
        model_version="4",
        month=MARCH,
        rmse_limit=rmse_limit,
    )


def stored_run(url: str, month: datetime) -> dict[str, Any]:
    """The drift_runs row of ``month``, as the store reads it back."""
    runs = read_drift_runs(Settings(monitoring_db_url=url))
    (row,) = runs[runs["month"] == month].to_dict("records")
    return row


@pytest.fixture(scope="module")
def drift_db(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fresh_schema(postgres_url, prefix="grafana") as url:
        store_run(url, model_version="3", month=JANUARY, alert=False)
        store_run(
            url,
            model_version="3",
            month=FEBRUARY,
            alert=True,
            reasons="kolmogorov_smirnov on brightness",
            estimated_rmse=23.0,
        )
        # A limit far below any RMSE: the estimated-RMSE rule must fire on this run.
        measure_march(url, tmp_path_factory.mktemp("drift"), rmse_limit=1.0)
        yield url


@pytest.fixture
def empty_db(postgres_url: str) -> Iterator[str]:
    with fresh_schema(postgres_url, prefix="grafana") as url:
        yield url


# --- every query runs and has the shape Grafana needs ------------------------------------------


def test_every_query_is_found():
    kinds = [q.kind for q in grafana_queries()]
    panels = _dashboard()["panels"]
    assert (
        kinds.count("table") + kinds.count("time_series")
        == sum(len(p["targets"]) for p in panels)
        >= 7
    )
    assert kinds.count("variable") == 3
    assert kinds.count("annotation") == 1
    assert kinds.count("alert") == len(_rules()) == 2
    assert len({q.where for q in grafana_queries()}) == len(kinds)


def _check_shape(query: GrafanaQuery, result: Result) -> None:
    kinds = dict(zip(result.columns, result.oids, strict=True))
    if query.kind == "time_series":
        # Grafana: a "time" column, an optional text "metric" (the series' name), numbers.
        assert result.columns[0] == "time" and kinds["time"] in _TIME_OIDS
        values = [c for c in result.columns if c not in ("time", "metric")]
        assert values and all(kinds[c] in _NUMERIC_OIDS for c in values), kinds
        if "metric" in kinds:
            assert kinds["metric"] in _TEXT_OIDS
        times = [row[0] for row in result.rows]
        assert times == sorted(times), "a time series must be ordered by time"
    elif query.kind == "variable":
        assert len(result.columns) == 1
        assert len({row[0] for row in result.rows}) == len(result.rows), "duplicate options"
    elif query.kind == "annotation":
        assert result.columns == ["time", "text", "tags"] and kinds["time"] in _TIME_OIDS
    elif query.kind == "alert":
        _instances(result)  # Grafana's three conditions on tabular alert data


@pytest.mark.parametrize("query", grafana_queries(), ids=lambda q: q.where)
def test_query_runs_and_returns_rows(drift_db: str, query: GrafanaQuery):
    result = run_sql(drift_db, expand(query.sql, resolve_variables(drift_db)))
    assert result.rows, f"{query.where}: no rows"
    _check_shape(query, result)


@pytest.mark.parametrize("query", grafana_queries(), ids=lambda q: q.where)
def test_query_runs_for_one_selected_version_and_month(drift_db: str, query: GrafanaQuery):
    """Narrow choices (one version, a range holding one month) must still be valid SQL."""
    one_month = (datetime(2026, 2, 1), datetime(2026, 2, 28, 23, 59, 59))
    variables = resolve_variables(drift_db, {"model_version": ["3"]}, one_month)
    result = run_sql(drift_db, expand(query.sql, variables, one_month))
    _check_shape(query, result)


# --- the queries that decide something return the right values ---------------------------------


def test_model_version_variable_lists_versions_in_promotion_order(drift_db: str):
    assert resolve_variables(drift_db)["model_version"] == ["3", "4"]
    narrowed = resolve_variables(drift_db, {"model_version": ["4"]})
    assert "performance" in narrowed["column"] and "rmse" in narrowed["metric"]


def test_verdict_panel_shows_the_latest_month_with_its_reasons(drift_db: str):
    query = _panel_query("Month verdict")
    (row,) = run_sql(drift_db, expand(query.sql, resolve_variables(drift_db))).dicts()
    march = stored_run(drift_db, MARCH)  # what measure_drift found and stored
    assert march["alert"] and march["reasons"]  # a darker, blurrier month: an alert
    assert row == {
        "month": "2026-03",
        "model version": "4",
        "verdict": "ALERT",
        "reasons": march["reasons"],
    }
    # Version 3 alone: its latest month, February.
    variables = resolve_variables(drift_db, {"model_version": ["3"]})
    (row,) = run_sql(drift_db, expand(query.sql, variables)).dicts()
    assert (row["month"], row["verdict"]) == ("2026-02", "ALERT")
    # A range that ends in January: January's calm verdict.
    january = (datetime(2025, 12, 1), datetime(2026, 1, 31))
    (row,) = run_sql(drift_db, expand(query.sql, resolve_variables(drift_db), january)).dicts()
    assert (row["month"], row["verdict"], row["reasons"]) == ("2026-01", "OK", "-")


def test_promotions_mark_each_version_at_its_first_month(drift_db: str):
    (annotation,) = [q for q in grafana_queries() if q.kind == "annotation"]
    rows = run_sql(drift_db, expand(annotation.sql, resolve_variables(drift_db))).dicts()
    assert [(r["time"], r["tags"]) for r in rows] == [
        (JANUARY, "promotion,3"),
        (MARCH, "promotion,4"),
    ]
    assert all("model version" in r["text"] for r in rows)
    # A range starting in February: version 3 was promoted before it, so no marker (and not
    # one at February, its first month *in range*).
    from_february = (FEBRUARY, datetime(2026, 12, 31))
    rows = run_sql(drift_db, expand(annotation.sql, resolve_variables(drift_db), from_february))
    assert [r[0] for r in rows.rows] == [MARCH]


def test_month_level_tests_table_lists_the_stored_tests(drift_db: str):
    query = _panel_query("Month-level tests")
    rows = run_sql(drift_db, expand(query.sql, resolve_variables(drift_db))).dicts()
    stored = read_drift_tests(
        Settings(monitoring_db_url=drift_db), _key("commit-2026-03", "ref-4", "4")
    )
    assert len(stored) > 3 and len(rows) == 3 + 3 + len(stored)  # January, February, March
    march = [r for r in rows if r["month"] == "2026-03"]
    assert rows[: len(march)] == march  # latest month first, then its alerting tests first
    shown = sorted((r["method"], r["column"], r["p-value"], r["alpha (Holm)"]) for r in march)
    columns = ("method", "column_name", "p_value", "alpha")
    assert shown == sorted(stored[list(columns)].itertuples(index=False, name=None))
    alerting = [r["alert"] for r in march]
    assert alerting == sorted(alerting, reverse=True) and alerting[0]


def test_rmse_panel_pairs_realized_and_estimated_with_the_limit(drift_db: str):
    query = _panel_query("RMSE per month")
    rows = run_sql(drift_db, expand(query.sql, resolve_variables(drift_db))).dicts()
    assert [(r["time"], r["metric"]) for r in rows] == [
        (JANUARY, "3"),
        (FEBRUARY, "3"),
        (MARCH, "4"),
    ]
    march = stored_run(drift_db, MARCH)
    assert rows[-1]["realized RMSE"] == pytest.approx(march["rmse_analysis"])
    assert rows[-1]["estimated RMSE"] == pytest.approx(march["estimated_rmse"])
    assert rows[-1]["reference RMSE"] == pytest.approx(march["rmse_reference"])
    assert rows[-1]["RMSE limit"] == 1.0
    assert (rows[1]["estimated RMSE"], rows[1]["RMSE limit"]) == (23.0, 21.0)  # February


# --- the alert rules, evaluated as Grafana evaluates them -------------------------------------


def _instances(result: Result) -> list[tuple[dict[str, str], float]]:
    """Tabular alert data to (labels, value) per row: exactly one numeric column, the others
    text (they become labels), label sets unique; otherwise Grafana fails the rule."""
    numeric = [
        c for c, oid in zip(result.columns, result.oids, strict=True) if oid in _NUMERIC_OIDS
    ]
    others = [
        c for c, oid in zip(result.columns, result.oids, strict=True) if oid not in _NUMERIC_OIDS
    ]
    assert len(numeric) == 1, f"one numeric column wanted, got {numeric}"
    kinds = dict(zip(result.columns, result.oids, strict=True))
    assert all(kinds[c] in _TEXT_OIDS for c in others), f"non-text label columns: {kinds}"
    instances = []
    for row in result.dicts():
        labels = {c: row[c] for c in others}
        assert all(isinstance(v, str) and v for v in labels.values()), labels
        instances.append((labels, float(row[numeric[0]])))
    label_sets = [tuple(sorted(labels.items())) for labels, _ in instances]
    assert len(set(label_sets)) == len(label_sets), "label sets must be unique per row"
    return instances


_EVALUATORS = {
    "gt": lambda v, p: v > p[0],
    "lt": lambda v, p: v < p[0],
    "within_range": lambda v, p: p[0] < v < p[1],
    "outside_range": lambda v, p: v < p[0] or v > p[1],
}


def firing(url: str, rule: Mapping[str, Any]) -> list[dict[str, str]]:
    """The labels of the instances that fire: the SQL query's rows through the condition."""
    data = {q["refId"]: q for q in rule["data"]}
    condition = data[rule["condition"]]["model"]
    assert condition["type"] == "threshold", "this test evaluates threshold conditions only"
    source = data[condition["expression"]]
    assert source["datasourceUid"] == DATASOURCE_UID
    (cond,) = condition["conditions"]
    passes = _EVALUATORS[cond["evaluator"]["type"]]
    params = cond["evaluator"]["params"]
    result = run_sql(url, expand(source["model"]["rawSql"], {}))
    return [labels for labels, value in _instances(result) if passes(value, params)]


def _rule(uid: str) -> dict[str, Any]:
    (rule,) = [r for r in _rules() if r["uid"] == uid]
    return rule


VERDICT_RULE = "pawpaw-drift-month-verdict"
RMSE_RULE = "pawpaw-drift-estimated-rmse"


def test_both_rules_fire_on_the_real_drift_run(drift_db: str):
    march = stored_run(drift_db, MARCH)
    (verdict,) = firing(drift_db, _rule(VERDICT_RULE))
    assert verdict == {
        "month": "2026-03",
        "model_version": "4",
        "analysis_commit": "commit-2026-",  # left(…, 12)
        "reference_commit": "ref-4",
        "reasons": march["reasons"],
    }
    (rmse,) = firing(drift_db, _rule(RMSE_RULE))
    assert (rmse["month"], rmse["model_version"]) == ("2026-03", "4")
    assert float(rmse["estimated_rmse"]) == pytest.approx(march["estimated_rmse"], abs=0.005)
    assert float(rmse["realized_rmse"]) == pytest.approx(march["rmse_analysis"], abs=0.005)
    assert rmse["rmse_limit"] == "1.00"


def test_rmse_rule_follows_a_rerun_of_the_real_month(empty_db: str, tmp_path: Path):
    """The same month measured again with a limit above its estimate: the rerun replaces the
    row and the rule stops firing; measured again below it, it fires again."""
    run = measure_march(empty_db, tmp_path, rmse_limit=100.0)
    assert run.estimated_rmse < 100.0
    assert firing(empty_db, _rule(RMSE_RULE)) == []
    run = measure_march(empty_db, tmp_path, rmse_limit=run.estimated_rmse * 0.9)
    (fired,) = firing(empty_db, _rule(RMSE_RULE))
    assert float(fired["rmse_limit"]) == pytest.approx(run.estimated_rmse * 0.9, abs=0.005)
    assert len(read_drift_runs(Settings(monitoring_db_url=empty_db))) == 1


@pytest.mark.parametrize(
    ("latest_alert", "fires"), [(True, True), (False, False)], ids=["alert", "calm"]
)
def test_verdict_rule_fires_on_the_latest_month_only(
    empty_db: str, latest_alert: bool, fires: bool
):
    # An older alerting month must not keep the rule firing once a later month is calm.
    store_run(
        empty_db,
        model_version="3",
        month=JANUARY,
        alert=not latest_alert,
        reasons="chi2 on Blur" if not latest_alert else "",
    )
    store_run(
        empty_db,
        model_version="3",
        month=FEBRUARY,
        alert=latest_alert,
        reasons="kolmogorov_smirnov on brightness" if latest_alert else "",
    )
    fired = firing(empty_db, _rule(VERDICT_RULE))
    if fires:
        assert fired == [
            {
                "month": "2026-02",
                "model_version": "3",
                "analysis_commit": "commit-2026-",  # left(…, 12)
                "reference_commit": "ref-3",
                "reasons": "kolmogorov_smirnov on brightness",
            }
        ]
    else:
        assert fired == []


@pytest.mark.parametrize(
    ("estimated", "limit", "fires"),
    [(23.0, 21.0, True), (20.5, 21.0, False), (21.0, 21.0, False), (30.0, None, False)],
    ids=["above", "below", "at", "no-limit"],
)
def test_rmse_rule_fires_when_the_estimate_exceeds_the_limit(
    empty_db: str, estimated: float, limit: float | None, fires: bool
):
    # January was above its limit; only the latest month counts.
    store_run(empty_db, model_version="3", month=JANUARY, alert=False, estimated_rmse=40.0)
    store_run(
        empty_db,
        model_version="3",
        month=FEBRUARY,
        alert=False,
        estimated_rmse=estimated,
        rmse_limit=limit,
    )
    fired = firing(empty_db, _rule(RMSE_RULE))
    if fires:
        (labels,) = fired
        assert labels["month"] == "2026-02"
        assert float(labels["estimated_rmse"]) == estimated
        assert float(labels["rmse_limit"]) == limit
    else:
        assert fired == []


def test_rules_say_nothing_without_drift_runs(empty_db: str):
    store_run(empty_db, model_version="3", month=JANUARY, alert=False)
    assert firing(empty_db, _rule(VERDICT_RULE)) == []
    assert firing(empty_db, _rule(RMSE_RULE)) == []


def test_annotations_quote_only_labels_the_query_returns(drift_db: str):
    for rule in _rules():
        (source,) = [q for q in rule["data"] if q["datasourceUid"] == DATASOURCE_UID]
        result = run_sql(drift_db, expand(source["model"]["rawSql"], {}))
        labels = set(_instances(result)[0][0])
        used = set()
        for text in rule["annotations"].values():
            used |= set(re.findall(r"\$labels\.(\w+)", text))
        assert used and used <= labels, (rule["uid"], used - labels)
        assert {"month", "reasons"} <= used or "estimated_rmse" in used, rule["uid"]
        summary = rule["annotations"]["summary"]
        assert "$labels.month" in summary, rule["uid"]
