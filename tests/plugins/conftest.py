"""The plugin module as Airflow loads it: a top-level module from the plugins folder (also put on sys.path)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PLUGINS_FOLDER = PROJECT_ROOT / "plugins"
PLUGIN_MODULE = "scones_monitoring_plugin"


@pytest.fixture(scope="session")
def plugin() -> ModuleType:
    if str(PLUGINS_FOLDER) not in sys.path:
        sys.path.insert(0, str(PLUGINS_FOLDER))
    return importlib.import_module(PLUGIN_MODULE)
