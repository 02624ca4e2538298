"""The library's Settings as a pipeline task sees them: PAWPAW_* settings + Airflow Connections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pawpaw_airflow.hooks import LakeFSHook, MLflowHook, MonitoringDBHook

if TYPE_CHECKING:
    from pawpaw.config import Settings

__all__ = ["pipeline_settings"]


def pipeline_settings() -> Settings:
    """Settings with endpoints and credentials taken from the Connections that exist."""
    from pawpaw.config import Settings

    overrides: dict = {}
    for hook in (LakeFSHook(), MLflowHook(), MonitoringDBHook()):
        overrides |= hook.settings_overrides()
    # Constructor, not model_copy: connection values get validated (and secrets wrapped).
    return Settings(**overrides)
