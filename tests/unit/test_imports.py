"""Every dependency the project names imports in one environment."""

import importlib

import pytest

pytestmark = pytest.mark.unit

MODULES = [
    "airflow.sdk",
    "airflow.providers.amazon",
    "airflow.providers.postgres",
    "airflow.providers.standard",
    "mlflow",
    "bentoml",
    "nannyml",
    "lakefs",
    "lakefs_sdk",
    "torch",
    "torchvision",
    "timm",
    "onnxruntime",
    "pydantic",
    "pydantic_settings",
    "typer",
]


@pytest.mark.parametrize("name", MODULES)
def test_dependency_imports(name: str) -> None:
    assert importlib.import_module(name) is not None


def test_library_never_imports_airflow() -> None:
    from pathlib import Path

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
