"""Run a benchmark module's quick version as a user would, and read its JSON result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT


def run_quick(module: str, out: Path, *flags: str) -> dict[str, Any]:
    """``python -m MODULE --quick FLAGS --out OUT`` from the repository root (``benchmarks``
    is a package there); its result. A failed run fails the caller with its stderr's end."""
    completed = subprocess.run(
        [sys.executable, "-m", module, "--quick", *flags, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard, not a performance assertion
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result
