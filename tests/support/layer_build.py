"""``layer/build.py``, loaded as a module for the tests that call its functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent.parent
BUILD_SCRIPT = ROOT / "layer" / "build.py"


def load_build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tmdb_layer_build", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
