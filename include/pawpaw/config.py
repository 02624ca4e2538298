"""Settings: every endpoint, credential, path and default of the system, in one place.

Read from the environment (prefix ``PAWPAW_``) and from ``.env``. Built lazily with
:func:`get_settings`; nothing here runs at import time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pawpaw.schema import MIN_SAMPLE_SIZE

__all__ = [
    "PROJECT_ROOT",
    "RETRAIN_SIGNALS",
    "TRAIN_MODES",
    "WEIGHTS_SOURCES",
    "Settings",
    "checked_signals",
    "get_settings",
]

# include/pawpaw/config.py -> the repository root (an editable install keeps this true).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# head: frozen backbone + regression head (CPU, seconds); finetune: the whole network (GPU).
TRAIN_MODES: tuple[str, ...] = ("head", "finetune")
# What may make the monthly run retrain: the champion's realized RMSE, its RMSE estimated
# without labels (NannyML DLE), the month's drift verdict (see pawpaw.decisions.needs_training).
RETRAIN_SIGNALS: tuple[str, ...] = ("rmse", "estimated_rmse", "drift")
# Where pretrained backbone weights come from (see pawpaw.model.backbone).
WEIGHTS_SOURCES: tuple[str, ...] = ("package", "hub", "none")


def checked_signals(signals: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``signals`` as a tuple, or a ValueError naming those not in RETRAIN_SIGNALS."""
    unknown = [s for s in signals if s not in RETRAIN_SIGNALS]
    if unknown:
        raise ValueError(f"unknown retrain signal(s) {unknown}; choose from {RETRAIN_SIGNALS}")
    return tuple(signals)


def _one_of(choices: tuple[str, ...]) -> str:
    return f"^({'|'.join(choices)})$"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PAWPAW_",
        env_file=(PROJECT_ROOT / ".env", ".env"),
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # --- paths -----------------------------------------------------------------------
    data_dir: Path = Field(
        default=PROJECT_ROOT / "data",
        description="Working data: pools, caches, embedded-profile databases.",
    )

    # --- lakeFS (the emulator serves these defaults: `pawpaw lakefs-emulator`) --------
    lakefs_endpoint: str = "http://127.0.0.1:8001"
    lakefs_access_key_id: str = "AKIAIOSFOLQUICKSTART"
    lakefs_secret_access_key: SecretStr = SecretStr("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    lakefs_repo: str = "pawpularity"
    lakefs_branch: str = "main"
    lakefs_storage_namespace: str = "local://pawpularity"
    lakefs_upload_workers: int = Field(default=16, ge=1, le=128)

    # --- MLflow ------------------------------------------------------------------------
    mlflow_tracking_uri: str | None = Field(
        default=None, description="Unset: a SQLite store under data_dir (embedded profile)."
    )
    mlflow_experiment: str = "pawpularity"
    registered_model: str = "pawpularity"

    # --- model -------------------------------------------------------------------------
    backbone: str = "tf_efficientnet_lite0"
    backbone_weights: str = Field(
        default="package",
        pattern=_one_of(WEIGHTS_SOURCES),
        description="See pawpaw.model.backbone.",
    )
    train_mode: str = Field(default="head", pattern=_one_of(TRAIN_MODES))
    embed_batch_size: int = Field(default=32, ge=1)
    embed_threads: int = Field(default=0, ge=0, description="0: all cores.")
    # Retrain when the champion's RMSE exceeds this fraction of the mean predictor's RMSE.
    retrain_threshold_ratio: float = Field(default=0.95, gt=0, le=2)

    # --- sampling ----------------------------------------------------------------------
    sample_size: int = Field(default=2000, ge=MIN_SAMPLE_SIZE)
    val_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.25, gt=0, lt=0.6)

    # --- drift -------------------------------------------------------------------------
    monitoring_db_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset: SQLite under data_dir."
    )
    # The month verdict's family-wise false-alarm rate: P(a calm month alerts) <= drift_alpha.
    drift_alpha: float = Field(default=0.01, gt=0, lt=1)
    # What makes needs_training retrain (besides force and no champion), see RETRAIN_SIGNALS.
    retrain_on: tuple[str, ...] = Field(default=RETRAIN_SIGNALS)

    @field_validator("retrain_on")
    @classmethod
    def _known_signals(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return checked_signals(value)

    # --- the embedded stack (`pawpaw up`): ports on 127.0.0.1 ------------------------------
    mlflow_port: int = Field(default=5000, ge=1, le=65535)
    airflow_port: int = Field(default=8080, ge=1, le=65535)
    serve_port: int = Field(default=3000, ge=1, le=65535, description="The bento service.")

    # --- serving -----------------------------------------------------------------------
    bento_model: str = "pawpularity"
    bento_service_dir: Path = PROJECT_ROOT / "bentos"
    bentoml_home: Path | None = Field(
        default=None, description="BentoML store (models, bentos); unset: $BENTOML_HOME, ~/bentoml."
    )

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.data_dir / 'mlflow.db'}"

    @property
    def drift_db_url(self) -> str:
        return self.monitoring_db_url or f"sqlite:///{self.data_dir / 'monitoring.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` after env changes)."""
    return Settings()
