"""Airflow adapters for the pawpaw library: hooks that turn Connections into clients.

Airflow puts ``plugins/`` on ``sys.path``, so DAGs import ``pawpaw_airflow`` directly.
"""

from pawpaw_airflow.hooks import LakeFSHook, MLflowHook, MonitoringDBHook
from pawpaw_airflow.settings import pipeline_settings

__all__ = ["LakeFSHook", "MLflowHook", "MonitoringDBHook", "pipeline_settings"]
