"""The environment is the locked one, and the APIs the project calls exist in it.

- pyproject.toml's dependencies (runtime and dev) are the ones uv.lock was resolved for;
- each is installed at the version uv.lock pins (an unsynced or hand-patched environment fails
  here, naming the package and both versions) and satisfies pyproject's specifier;
- the functions and classes the project calls, by their import path, are there and callable
  (an upgrade that moves or drops one fails here rather than in the middle of a pipeline run).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _declared() -> dict[str, Requirement]:
    """pyproject's runtime, optional (extras) and dev requirements by normalised name."""
    project = _pyproject()
    extras = project["project"].get("optional-dependencies", {}).values()
    lines = [
        *project["project"]["dependencies"],
        *(line for extra in extras for line in extra),
        *project["dependency-groups"]["dev"],
    ]
    requirements = [Requirement(line) for line in lines]
    return {_norm(r.name): r for r in requirements}


def _lock() -> dict:
    return tomllib.loads((REPO / "uv.lock").read_text())


def _locked_versions() -> dict[str, set[str]]:
    """Every locked package's version(s) (a package may be locked twice, under markers)."""
    versions: dict[str, set[str]] = {}
    for package in _lock()["package"]:
        if "version" in package:
            versions.setdefault(_norm(package["name"]), set()).add(package["version"])
    return versions


DECLARED = _declared()


def test_lock_was_resolved_for_the_declared_dependencies() -> None:
    """uv.lock's record of pyproject's requirements equals pyproject (else: `uv lock`)."""
    (project,) = [p for p in _lock()["package"] if p["name"] == _pyproject()["project"]["name"]]
    metadata = project["metadata"]
    locked = {
        _norm(d["name"]): SpecifierSet(d.get("specifier", ""))
        for d in [*metadata["requires-dist"], *metadata["requires-dev"]["dev"]]
    }
    declared = {name: req.specifier for name, req in DECLARED.items()}
    assert locked == declared


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_dependency_is_installed_at_the_locked_version(name: str) -> None:
    locked = _locked_versions().get(name)
    assert locked, f"{name} is declared in pyproject.toml but not in uv.lock"
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{name} is not installed (uv.lock pins {sorted(locked)}): run `make setup`")
    assert installed in locked, f"{name} {installed} is installed, uv.lock pins {sorted(locked)}"
    specifier = DECLARED[name].specifier
    assert specifier.contains(installed, prereleases=True), (
        f"{name} {installed} does not satisfy pyproject's {specifier}"
    )


# module -> attributes the project calls (each must be callable: a function or a class).
APIS: dict[str, tuple[str, ...]] = {
    "airflow.sdk": ("dag", "task", "Param", "get_current_context", "BaseHook", "Connection"),
    "airflow.sdk.exceptions": ("AirflowNotFoundException",),
    "airflow.providers.standard.operators.empty": ("EmptyOperator",),
    "airflow.dag_processing.dagbag": ("DagBag",),
    "mlflow": ("MlflowClient",),
    "mlflow.pyfunc": ("load_model", "save_model", "PythonModel"),
    "mlflow.models": ("set_model", "ModelSignature"),
    "mlflow.artifacts": ("download_artifacts",),
    "bentoml": ("service", "api", "asgi_app", "get_current_service", "SyncHTTPClient", "load"),
    "bentoml.models": ("BentoModel", "list", "get"),
    "bentoml.bentos": ("list", "get"),
    "bentoml.images": ("Image",),
    "bentoml.mlflow": ("import_model", "load_model"),
    "nannyml": ("UnivariateDriftCalculator", "PerformanceCalculator"),
    "nannyml.chunk": ("SizeBasedChunker", "CountBasedChunker"),
    "nannyml.thresholds": ("StandardDeviationThreshold", "calculate_threshold_values"),
    "nannyml.drift.univariate.methods": ("MethodFactory", "FeatureType"),
    "lakefs": ("Client", "Repository", "Branch", "Reference"),
    "lakefs_sdk.rest": ("RESTClientObject",),
    "timm": ("create_model", "is_model", "list_models"),
    "timm.data": ("resolve_data_config",),
    "torch.onnx": ("export",),
    "onnxruntime": ("InferenceSession", "SessionOptions", "get_available_providers"),
    "pydantic_settings": ("BaseSettings", "SettingsConfigDict"),
    "typer": ("Typer", "Option"),
}


@pytest.mark.parametrize(
    ("module", "attribute"),
    [(m, a) for m, attrs in APIS.items() for a in attrs],
    ids=[f"{m}.{a}" for m, attrs in APIS.items() for a in attrs],
)
def test_the_api_the_project_calls_exists(module: str, attribute: str) -> None:
    imported = importlib.import_module(module)
    assert hasattr(imported, attribute), f"{module} has no {attribute}"
    assert callable(getattr(imported, attribute)), f"{module}.{attribute} is not callable"


def test_trigger_rule_the_dag_joins_with_exists() -> None:
    from airflow.sdk import TriggerRule

    assert TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS.value == "none_failed_min_one_success"


def test_the_configured_backbone_is_a_timm_model() -> None:
    import timm

    from pawpaw.config import Settings

    assert timm.is_model(Settings().backbone)


def test_library_never_imports_airflow() -> None:
    import pawpaw

    root = Path(pawpaw.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if any(
            line.lstrip().startswith(("import airflow", "from airflow"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []
