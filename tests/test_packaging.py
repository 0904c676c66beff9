"""What ships: the ``tmdb-ingest`` wheel holds the runtime package and nothing else, and its
console script is the command line. Built offline from this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (found,) = out.glob("tmdb_ingest-*.whl")
    return found


def test_the_wheel_holds_the_runtime_package_only(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = next(zf.read(n) for n in names if n.endswith("entry_points.txt"))
        metadata = next(zf.read(n) for n in names if n.endswith("METADATA")).decode()
    packages = {n.split("/", 1)[0] for n in names if ".dist-info/" not in n}
    assert packages == {"tmdb_async"}
    sources = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "tmdb_async").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert sources <= set(names)  # every layer: tmdb/, lake/, jobs/
    assert not [n for n in names if "fake_tmdb" in n or "local_map" in n or "csvgen" in n]
    assert b"tmdb-ingest = tmdb_async.cli:main" in entry_points
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    runtime = [r for r in requires if "extra ==" not in r]
    assert any("aiohttp" in r for r in runtime) and any(
        "aws-lambda-powertools" in r for r in runtime
    )
    assert any("tqdm" in r for r in runtime)  # the progress bar: every install shows it


def test_the_installed_console_script_is_the_command_line(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target)}  # the installed copy, not the checkout
    done = subprocess.run(
        [str(target / "bin" / "tmdb-ingest"), "run", "--help"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--skip-existing" in done.stdout
    assert done.stdout.startswith("usage: tmdb-ingest run")  # the command the user typed
    where = subprocess.run(
        [sys.executable, "-c", "import tmdb_async; print(tmdb_async.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(target))


def test_the_version_is_declared_once_and_names_the_client(wheel: Path) -> None:
    import tmdb_async
    from tmdb_async.tmdb import client

    assert f"-{tmdb_async.__version__}-" in wheel.name  # pyproject reads tmdb_async._version
    with zipfile.ZipFile(wheel) as zf:
        metadata = next(zf.read(n) for n in zf.namelist() if n.endswith("METADATA")).decode()
    assert f"\nVersion: {tmdb_async.__version__}\n" in metadata
    assert f"tmdb-ingest/{tmdb_async.__version__} (+aiohttp)" == client._USER_AGENT


def test_the_devtools_help_is_an_answer_not_an_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tmdb_devtools", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m tmdb_devtools")
