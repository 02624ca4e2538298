import pytest

from pawpaw.config import Settings

pytestmark = pytest.mark.unit


def test_embedded_defaults_derive_sqlite_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("PAWPAW_DATA_DIR", str(tmp_path))
    s = Settings()
    assert s.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert s.drift_db_url == f"sqlite:///{tmp_path / 'monitoring.db'}"


def test_explicit_urls_win(monkeypatch):
    monkeypatch.setenv("PAWPAW_MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("PAWPAW_MONITORING_DB_URL", "postgresql://u:p@db/m")
    s = Settings()
    assert s.tracking_uri == "http://mlflow:5000"
    assert s.drift_db_url == "postgresql://u:p@db/m"


def test_bad_value_is_named(monkeypatch):
    monkeypatch.setenv("PAWPAW_TRAIN_MODE", "bogus")
    with pytest.raises(Exception, match="train_mode"):
        Settings()
