#!/usr/bin/env python3
"""Build the tmdb-ingest Lambda layer zip (standard library only).

The layer carries everything the function needs under ``python/``:

* the pinned runtime dependencies from ``requirements.txt``, installed as Linux wheels for the
  target Python version and architecture. That includes boto3/botocore/s3transfer at the versions
  aiobotocore pins: the Lambda runtime's own botocore does not match aiobotocore and breaks it;
* the project's own code (``tmdb_async/`` and ``handler.py``), so the layer alone can run the
  handler.

Usage::

    python layer/build.py [--python 3.12|3.13] [--arch arm64|x86_64]
                          [--requirements requirements.txt] [--out layer/dist]

``--python 3.11`` exists only for local tests on a 3.11 machine (Lambda has no 3.11 on Amazon
Linux 2023 here). The output is ``<out>/tmdb-ingest-layer-py<version>-<arch>.zip``. The build
fails (exit status 1) if pip fails or the zip breaks Lambda's size limits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LAYER_NAME = "tmdb-ingest-layer"

MIB = 1024 * 1024
# Lambda limits: 50 MB zipped for a direct upload, 250 MB unzipped for function plus layers
# (AWS counts these in MiB: 52,428,800 and 262,144,000 bytes).
MAX_ZIPPED_BYTES = 50 * MIB
MAX_UNZIPPED_BYTES = 250 * MIB

PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
# manylinux2014 (glibc 2.17) covers every pinned package today; the newer tags are accepted too
# because Amazon Linux 2023 (python3.12/3.13 runtimes) has glibc 2.34, so a package that one day
# ships only manylinux_2_28 wheels still installs. pip prefers the tags in the order given.
PLATFORMS = {
    "x86_64": ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64"),
    "arm64": ("manylinux2014_aarch64", "manylinux_2_28_aarch64", "manylinux_2_34_aarch64"),
}

# Distributions that must be in the layer: without botocore/boto3/s3transfer at aiobotocore's
# pinned versions the runtime's copies are used and aiobotocore fails.
REQUIRED_DISTRIBUTIONS = ("aioboto3", "aiobotocore", "boto3", "botocore", "s3transfer", "aiohttp")

PROJECT_PACKAGE = "tmdb_async"
PROJECT_MODULES = ("handler.py",)

# 1980-01-01 00:00:00, the earliest time a zip entry can hold: fixed timestamps make the zip
# byte-for-byte reproducible for the same inputs.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class BuildError(Exception):
    """A build step failed; the message says which and why."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Build the tmdb-ingest Lambda layer zip.")
    parser.add_argument(
        "--python",
        choices=PYTHON_VERSIONS,
        default="3.12",
        help="Python version of the Lambda runtime (3.11 only for local import tests)",
    )
    parser.add_argument(
        "--arch", choices=sorted(PLATFORMS), default="arm64", help="Lambda architecture"
    )
    parser.add_argument(
        "--requirements",
        type=Path,
        default=REPO_ROOT / "requirements.txt",
        help="pinned requirements file (default: the repository's requirements.txt)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "layer" / "dist",
        help="output folder for the zip (default: layer/dist)",
    )
    parser.add_argument(
        "--no-project-code",
        action="store_true",
        help=f"dependencies only: do not copy {PROJECT_PACKAGE}/ and handler.py into the layer",
    )
    return parser.parse_args(argv)


def zip_name(python: str, arch: str) -> str:
    return f"{LAYER_NAME}-py{python}-{arch}.zip"


def pip_install(requirements: Path, target: Path, python: str, arch: str) -> None:
    """Install Linux wheels for the target runtime into ``target`` (no bytecode, no sdists)."""
    if not requirements.is_file():
        raise BuildError(f"requirements file not found: {requirements}")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--quiet",
        "--requirement",
        str(requirements),
        "--target",
        str(target),
        "--implementation",
        "cp",
        "--python-version",
        python,
        "--only-binary=:all:",
        "--no-compile",
    ]
    for platform in PLATFORMS[arch]:
        cmd += ["--platform", platform]
    print(f"+ {' '.join(cmd)}", flush=True)
    result = subprocess.run(cmd, check=False)
    if result.returncode != 0:
        raise BuildError(
            f"pip install failed with exit status {result.returncode} "
            f"(Python {python}, {arch}); see pip's output above"
        )


def installed_distributions(site: Path) -> dict[str, str]:
    """Map normalised distribution name -> version, from the ``*.dist-info`` folders."""
    found: dict[str, str] = {}
    for info in site.glob("*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        found[name.lower().replace("_", "-").replace(".", "-")] = version
    return found


def check_required(site: Path) -> None:
    found = installed_distributions(site)
    missing = [name for name in REQUIRED_DISTRIBUTIONS if name not in found]
    if missing:
        raise BuildError(
            f"the layer is missing {', '.join(missing)}: pin them in the requirements file "
            "(aiobotocore needs its own botocore/boto3/s3transfer in the layer)"
        )


def prune(site: Path) -> None:
    """Drop what Lambda never uses: bytecode, dependencies' test suites, console scripts."""
    for path in sorted(site.rglob("__pycache__"), reverse=True):
        shutil.rmtree(path, ignore_errors=True)
    for path in site.rglob("*.py[co]"):
        path.unlink()
    # Test packages *inside* a dependency (aioitertools/tests, ...); never a top-level package.
    for top in site.iterdir():
        if not top.is_dir() or top.name.endswith(".dist-info"):
            continue
        for path in sorted(top.rglob("*"), reverse=True):
            if path.is_dir() and path.name in {"tests", "test"}:
                shutil.rmtree(path)
    # Console scripts (jp.py, tqdm, ...) are not on any path in Lambda.
    shutil.rmtree(site / "bin", ignore_errors=True)


def copy_project_code(site: Path) -> None:
    package = REPO_ROOT / PROJECT_PACKAGE
    modules = [REPO_ROOT / name for name in PROJECT_MODULES]
    missing = [str(p.relative_to(REPO_ROOT)) for p in [package, *modules] if not p.exists()]
    if missing:
        raise BuildError(
            f"project code not found: {', '.join(missing)} "
            "(use --no-project-code for a dependencies-only layer)"
        )
    if (site / PROJECT_PACKAGE).exists():
        raise BuildError(f"a dependency already provides a top-level {PROJECT_PACKAGE!r}")
    shutil.copytree(
        package,
        site / PROJECT_PACKAGE,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"),
    )
    for module in modules:
        shutil.copy2(module, site / module.name)


def write_zip(root: Path, dest: Path) -> tuple[int, int]:
    """Zip ``root``'s contents deterministically; return (zipped, unzipped) sizes in bytes."""
    files = sorted(
        (p for p in root.rglob("*") if p.is_file() and not p.is_symlink()),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    unzipped = 0
    tmp = dest.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=ZIP_EPOCH)
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            unzipped += len(data)
            zf.writestr(info, data, compresslevel=9)
    os.replace(tmp, dest)
    return dest.stat().st_size, unzipped


def build(args: argparse.Namespace) -> Path:
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    dest = out / zip_name(args.python, args.arch)
    with tempfile.TemporaryDirectory(prefix="tmdb-layer-") as tmp:
        root = Path(tmp)
        site = root / "python"
        site.mkdir()
        pip_install(args.requirements.resolve(), site, args.python, args.arch)
        check_required(site)
        prune(site)
        if not args.no_project_code:
            copy_project_code(site)
        zipped, unzipped = write_zip(root, dest)

    print(f"layer: {dest}")
    print(f"zipped: {zipped / MIB:.2f} MB (limit {MAX_ZIPPED_BYTES // MIB} MB)")
    print(f"unzipped: {unzipped / MIB:.2f} MB (limit {MAX_UNZIPPED_BYTES // MIB} MB)")
    problems = size_problems(zipped, unzipped)
    if problems:
        raise BuildError("; ".join(problems) + " (Lambda would reject this layer)")
    return dest


def size_problems(zipped: int, unzipped: int) -> list[str]:
    """Lambda's layer limits that the sizes (in bytes) break; empty when within them."""
    problems = []
    if zipped > MAX_ZIPPED_BYTES:
        problems.append(f"zipped size {zipped / MIB:.2f} MB exceeds {MAX_ZIPPED_BYTES // MIB} MB")
    if unzipped > MAX_UNZIPPED_BYTES:
        problems.append(
            f"unzipped size {unzipped / MIB:.2f} MB exceeds {MAX_UNZIPPED_BYTES // MIB} MB"
        )
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        build(args)
    except BuildError as exc:
        print(f"layer build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
