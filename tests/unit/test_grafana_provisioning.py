"""Grafana's alerting provisioning (docker/grafana/provisioning/alerting/), checked as files.

Grafana refuses to start on a provisioning file it cannot apply, so what it would reject is
checked here: the file format (apiVersion 1), unique rule uids, conditions that name a query,
queries on the provisioned data source, valid no-data/error states and durations, a
notification policy that routes to a provisioned contact point, and environment variables
that compose actually gives the container. The SQL itself runs against PostgreSQL in
tests/integration/test_grafana_queries.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.unit.test_compose import _env, _environment, _grafana_mount, _rendered_environment

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "docker" / "grafana" / "provisioning"
ALERTING = PROVISIONING / "alerting"
DATASOURCES = PROVISIONING / "datasources" / "monitoring.yaml"
DASHBOARD_PROVIDER = PROVISIONING / "dashboards" / "pawpaw.yaml"
ENTRYPOINT = ROOT / "docker" / "grafana" / "grafana-entrypoint.sh"

# What Grafana's alerting file provisioning (format v1) accepts at the top level.
TOP_LEVEL = {
    "apiVersion",
    "groups",
    "deleteRules",
    "contactPoints",
    "deleteContactPoints",
    "policies",
    "resetPolicies",
    "templates",
    "deleteTemplates",
    "muteTimes",
    "deleteMuteTimes",
}
NO_DATA_STATES = {"NoData", "Alerting", "OK", "KeepLast"}
EXEC_ERR_STATES = {"Error", "Alerting", "OK", "KeepLast"}
EXPRESSION_UID = "__expr__"
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")  # Prometheus-style, as Grafana parses
_UID = re.compile(r"^[a-zA-Z0-9_-]{1,40}$")
_ENV_REF = re.compile(r"\$\{(\w+)\}")


@cache
def _files() -> dict[str, dict[str, Any]]:
    files = {p.name: yaml.safe_load(p.read_text()) for p in sorted(ALERTING.iterdir())}
    assert files, f"nothing provisioned in {ALERTING}"
    return files


def _all(key: str) -> list[dict[str, Any]]:
    return [item for doc in _files().values() for item in doc.get(key, [])]


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _all("groups") for rule in group["rules"]]


def _datasource_uid() -> str:
    (ds,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    return ds["uid"]


def _grafana_environment() -> set[str]:
    """The variables Grafana's process has: compose's environment and the entrypoint's exports."""
    names = set(_environment("grafana"))
    for line in re.findall(r"^export (.+)$", ENTRYPOINT.read_text(), re.M):
        names |= set(line.split())
    return names


def _interpolated_strings(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(path, value) of every string Grafana runs through its $VAR interpolation: everything
    except rule annotations and query models (those keep `$` for alert templates and macros)."""

    def walk(node: Any, path: tuple[str | int, ...]) -> Iterator[tuple[str, str]]:
        if path[:1] == ("groups",) and len(path) == 5 and path[4] == "annotations":
            return
        if path[:1] == ("groups",) and len(path) == 7 and path[6] == "model":
            return
        if isinstance(node, str):
            yield "/".join(map(str, path)), node
        elif isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, (*path, key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, (*path, i))

    yield from walk(doc, ())


# --- the files ----------------------------------------------------------------------------------


def test_alerting_files_use_the_v1_format():
    for name, doc in _files().items():
        assert name.endswith(".yaml"), name
        assert doc["apiVersion"] == 1, name
        assert set(doc) <= TOP_LEVEL, f"{name}: {set(doc) - TOP_LEVEL}"
    assert _all("groups") and _all("contactPoints") and _all("policies")


def test_the_alerting_folder_is_mounted_where_grafana_looks():
    assert "GF_PATHS_PROVISIONING" not in _environment("grafana")  # the image's default
    assert _grafana_mount("/etc/grafana/provisioning") == PROVISIONING.resolve()


# --- rules -------------------------------------------------------------------------------------


def test_rule_uids_and_titles_are_unique_and_valid():
    uids = [rule["uid"] for rule in _rules()]
    assert len(uids) == len(set(uids)) == 2
    assert all(_UID.match(uid) for uid in uids), uids
    titles = [(g["folder"], r["title"]) for g in _all("groups") for r in g["rules"]]
    assert len(titles) == len(set(titles))


def test_rule_groups_sit_beside_the_dashboard_and_evaluate_regularly():
    (provider,) = yaml.safe_load(DASHBOARD_PROVIDER.read_text())["providers"]
    for group in _all("groups"):
        assert group["orgId"] == provider["orgId"] == 1
        assert group["folder"] == provider["folder"]
        assert _DURATION.match(group["interval"]), group["interval"]


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r["uid"])
def test_rule_is_well_formed(rule: dict[str, Any]):
    queries = {q["refId"]: q for q in rule["data"]}
    assert len(queries) == len(rule["data"]), "refIds must be unique"
    assert rule["condition"] in queries
    assert rule["noDataState"] in NO_DATA_STATES
    assert rule["execErrState"] in EXEC_ERR_STATES
    assert _DURATION.match(rule["for"]), rule["for"]
    assert rule.get("isPaused") is False
    for ref, query in queries.items():
        model = query["model"]
        assert model.get("refId", ref) == ref
        if query["datasourceUid"] == EXPRESSION_UID:
            assert model["datasource"] == {"type": EXPRESSION_UID, "uid": EXPRESSION_UID}
            assert model["expression"] in queries and model["expression"] != ref
            if model["type"] == "threshold":
                (cond,) = model["conditions"]
                assert cond["evaluator"]["type"] in {"gt", "lt", "within_range", "outside_range"}
                assert all(isinstance(p, int | float) for p in cond["evaluator"]["params"])
        else:
            assert query["datasourceUid"] == _datasource_uid()
            # Tabular data: one row per run, numeric value + text labels (see the integration test).
            assert model["format"] == "table" and model["rawQuery"] is True
            assert model["rawSql"].strip()
            window = query["relativeTimeRange"]
            assert window["from"] > window["to"] >= 0


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r["uid"])
def test_rule_annotations_name_the_month_and_why(rule: dict[str, Any]):
    notes = rule["annotations"]
    assert {"summary", "description"} <= set(notes)
    for text in (notes["summary"], notes["description"]):
        assert "{{ $labels.month }}" in text
        # Newer Grafana expands ${VAR} in annotations; `$labels` must stay a template variable.
        assert "${" not in text and "$$" not in text
    assert "{{ $labels.reasons }}" in notes["description"]
    assert "{{ $labels.model_version }}" in notes["summary"]
    # Labels are interpolated from the environment: no `$` (a template there would vanish).
    assert all("$" not in f"{k}{v}" for k, v in rule["labels"].items())


def test_rules_cover_the_verdict_and_the_estimated_rmse():
    sql = {
        rule["uid"]: " ".join(q["model"].get("rawSql", "") for q in rule["data"])
        for rule in _rules()
    }
    verdict, rmse = sql["pawpaw-drift-month-verdict"], sql["pawpaw-drift-estimated-rmse"]
    assert "r.alert" in verdict and "max(month)" in verdict
    assert "estimated_rmse - r.rmse_limit" in rmse and "rmse_limit IS NOT NULL" in rmse


# --- contact point, policy and the environment -------------------------------------------------


def test_contact_point_is_a_webhook_configured_from_the_environment():
    (contact,) = _all("contactPoints")
    (receiver,) = contact["receivers"]
    assert receiver["type"] == "webhook" and _UID.match(receiver["uid"])
    url = receiver["settings"]["url"]
    (name,) = _ENV_REF.findall(url)
    assert url == f"${{{name}}}" and name.startswith("GRAFANA_ALERT_")
    # compose gives it to the container, with the .env default; that default is a URL.
    assert _environment("grafana")[name] == f"${{{name}:-{_env()[name]}}}"
    rendered = urlsplit(_rendered_environment("grafana")[name])
    assert rendered.scheme in {"http", "https"} and rendered.hostname


def test_every_environment_reference_is_in_grafanas_environment():
    available = _grafana_environment()
    for name, doc in _files().items():
        for path, value in _interpolated_strings(doc):
            for part in value.split("$$"):
                bare = re.sub(_ENV_REF, "", part)
                assert "$" not in bare, f"{name}:{path}: a `$` Grafana would expand: {value!r}"
                for var in _ENV_REF.findall(part):
                    assert var in available, f"{name}:{path}: ${{{var}}} is not set for grafana"


def test_env_marks_the_alerting_values_as_development_defaults():
    text = (ROOT / ".env").read_text()
    block = text[text.index("# Grafana alerting") :]
    assert "development default" in block and "GRAFANA_ALERT_WEBHOOK_URL=" in block


def test_policy_routes_every_alert_to_a_provisioned_contact_point():
    contacts = {c["name"] for c in _all("contactPoints")}
    (policy,) = _all("policies")
    assert policy["orgId"] == 1
    assert not policy.get("matchers") and not policy.get("object_matchers"), "root catches all"

    def receivers(route: dict[str, Any]) -> Iterator[str]:
        if "receiver" in route:
            yield route["receiver"]
        for child in route.get("routes", []):
            yield from receivers(child)

    assert set(receivers(policy)) <= contacts and policy["receiver"] in contacts
    for key in ("group_wait", "group_interval", "repeat_interval"):
        assert _DURATION.match(policy[key]), key
    # Alerts of different months are separate notifications.
    assert "month" in policy["group_by"] and "alertname" in policy["group_by"]
