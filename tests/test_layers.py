"""The package's layers, as the import statements draw them.

``tmdb/`` (talking to TMDB) and ``lake/`` (everything under ``Raw/TMDB/``) never import each
other, nor ``jobs/`` (a run end to end, built on both), nor the entry points. The settings,
errors, redaction, logging and IMDb id rules at the top import no layer. Shipped code never
imports the development tools. Every import counts, at module level or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tmdb_async"
CORE = ("settings", "options", "credentials", "errors", "redaction", "log", "imdb", "_version")
ENTRY_POINTS = ("cli", "events", "__main__")

# layer -> the parts of tmdb_async it must not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "tmdb": ("lake", "jobs", *ENTRY_POINTS),
    "lake": ("tmdb", "jobs", *ENTRY_POINTS),
    "jobs": ENTRY_POINTS,
    **{module: ("tmdb", "lake", "jobs", *ENTRY_POINTS) for module in CORE},
}


def _layer(path: Path) -> str:
    part = path.relative_to(PACKAGE).parts[0]
    return part.removesuffix(".py")


def imports(source: str, module: str) -> set[str]:
    """Every module ``source`` imports (absolute names; relative ones resolved against
    ``module``, a dotted name)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def violations(layer: str, imported: set[str]) -> list[str]:
    bad = []
    for name in sorted(imported):
        parts = name.split(".")
        if parts[0] in ("tmdb_devtools", "tests", "handler", "benchmarks") or (
            parts[0] == "tmdb_async" and len(parts) > 1 and parts[1] in FORBIDDEN.get(layer, ())
        ):
            bad.append(name)
    return bad


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_each_module_imports_only_what_its_layer_may(path: Path) -> None:
    dotted = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    assert violations(_layer(path), imports(path.read_text(), dotted)) == []


def test_the_three_layers_and_the_top_are_all_there() -> None:
    layers = {_layer(path) for path in _modules()}
    assert {"tmdb", "lake", "jobs", *CORE, *ENTRY_POINTS} <= layers
    assert layers - {"tmdb", "lake", "jobs", *CORE, *ENTRY_POINTS, "__init__"} == set()


@pytest.mark.parametrize(
    ("layer", "module", "source"),
    [
        ("tmdb", "tmdb_async.tmdb.client", "from tmdb_async.lake.storage import Store"),
        ("lake", "tmdb_async.lake.ledger", "def f():\n    from ..tmdb import client\n"),
        ("lake", "tmdb_async.lake.ledger", "import tmdb_async.jobs.ingest"),
        ("settings", "tmdb_async.settings", "from tmdb_async import jobs"),
        ("jobs", "tmdb_async.jobs.ingest", "from tmdb_devtools.fake_tmdb import FakeTmdb"),
    ],
)
def test_a_forbidden_import_is_found_wherever_it_is_written(
    layer: str, module: str, source: str
) -> None:
    assert violations(layer, imports(source, module))
