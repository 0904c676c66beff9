"""The Lambda layer: ``layer/build.py``'s names, limits, pruning, deterministic zip and clear
failures (fast); then (slow) real builds with pip, checked for size and contents, and the
layer's code run in a Python that sees only the layer (``-S``: no site-packages), against a
moto server and the project's fake TMDB, the last one called by the state machine itself on
moto's interpreter."""

from __future__ import annotations

import contextlib
import email.parser
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.cfn import (
    ROOT,
)
from tests.support.layer_build import BUILD_SCRIPT, load_build_module
from tests.support.sfn import load_template

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def build() -> ModuleType:
    return load_build_module()


# --- layer/build.py (fast) -----------------------------------------------------------------


def test_build_names_and_limits(build: ModuleType) -> None:
    assert build.zip_name("3.12", "arm64") == "tmdb-ingest-layer-py3.12-arm64.zip"
    assert build.zip_name("3.13", "x86_64") == "tmdb-ingest-layer-py3.13-x86_64.zip"
    args = build.parse_args([])
    assert (args.python, args.arch) == ("3.12", "arm64")
    assert args.out == ROOT / "layer" / "dist"
    assert args.requirements == ROOT / "requirements.txt"
    assert build.size_problems(50 * MIB, 250 * MIB) == []
    assert len(build.size_problems(50 * MIB + 1, 250 * MIB + 1)) == 2
    assert "zipped" in build.size_problems(50 * MIB + 1, 1)[0]


def test_build_prunes_bytecode_and_dependency_tests(build: ModuleType, tmp_path: Path) -> None:
    site = tmp_path / "python"
    for rel in (
        "pkg/__init__.py",
        "pkg/__pycache__/mod.cpython-312.pyc",
        "pkg/stray.pyc",
        "pkg/tests/test_x.py",
        "pkg/sub/test/data.txt",
        "pkg/testing.py",
        "pkg-1.0.dist-info/licenses/LICENSE",
        "bin/tool",
    ):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("x", encoding="utf-8")
    build.prune(site)
    left = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert left == ["pkg-1.0.dist-info/licenses/LICENSE", "pkg/__init__.py", "pkg/testing.py"]


def test_build_zip_is_deterministic(build: ModuleType, tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel, text in {"python/b.py": "b = 2\n", "python/a/x.py": "x = 1\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    first, second = tmp_path / "1.zip", tmp_path / "2.zip"
    zipped, unzipped = build.write_zip(root, first)
    os.utime(root / "python" / "b.py", (1_000_000_000, 1_000_000_000))
    build.write_zip(root, second)
    assert first.read_bytes() == second.read_bytes()
    assert (zipped, unzipped) == (first.stat().st_size, 12)
    with zipfile.ZipFile(first) as zf:
        assert zf.namelist() == ["python/a/x.py", "python/b.py"]
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_build_fails_clearly(build: ModuleType, tmp_path: Path, capsys: Any) -> None:
    missing = tmp_path / "missing.txt"
    assert build.main(["--requirements", str(missing), "--out", str(tmp_path)]) == 1
    assert "requirements file not found" in capsys.readouterr().err

    broken = tmp_path / "broken.txt"
    broken.write_text("this is not ===a requirement\n", encoding="utf-8")
    code = build.main(["--requirements", str(broken), "--out", str(tmp_path / "out")])
    assert code == 1
    assert "pip install failed" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*.zip"))


# --- layer/build.py (slow: real pip builds) ------------------------------------------------


def build_layer(out: Path, python: str, arch: str) -> tuple[Path, float, float]:
    """Run layer/build.py as a user would; return (zip, zipped MB, unzipped MB) it printed."""
    args = [sys.executable, str(BUILD_SCRIPT), "--python", python, "--arch", arch]
    args += ["--out", str(out)]
    if not (ROOT / "handler.py").exists():
        args.append("--no-project-code")  # the engine is not there yet
    result = subprocess.run(
        args, capture_output=True, text=True, cwd=ROOT, timeout=900, check=False
    )
    assert result.returncode == 0, f"build failed:\n{result.stdout}\n{result.stderr}"
    sizes = dict(re.findall(r"^(zipped|unzipped): ([\d.]+) MB", result.stdout, re.MULTILINE))
    assert set(sizes) == {"zipped", "unzipped"}, result.stdout
    path = out / f"tmdb-ingest-layer-py{python}-{arch}.zip"
    assert path.is_file()
    assert abs(float(sizes["zipped"]) - path.stat().st_size / MIB) < 0.01
    return path, float(sizes["zipped"]), float(sizes["unzipped"])


def check_layer_zip(path: Path, zipped_mb: float, unzipped_mb: float) -> list[str]:
    assert zipped_mb < 50, f"{path.name}: {zipped_mb} MB zipped"
    assert unzipped_mb < 250, f"{path.name}: {unzipped_mb} MB unzipped"
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert abs(sum(i.file_size for i in zf.infolist()) / MIB - unzipped_mb) < 0.01
    assert names == sorted(names)
    assert all(n.startswith("python/") for n in names)
    assert not [n for n in names if n.endswith((".pyc", ".pyo")) or "__pycache__" in n]
    assert not [n for n in names if re.search(r"^python/[^/]+/(.+/)?tests?/", n)]
    for dist in ("aioboto3", "aiobotocore", "boto3", "botocore", "s3transfer", "aiohttp"):
        assert any(n.startswith(f"python/{dist}/") for n in names), dist
    if (ROOT / "handler.py").exists():
        assert "python/handler.py" in names
        assert "python/tmdb_async/__init__.py" in names
        assert "python/aws_lambda_powertools/__init__.py" in names
    # What ships is what runs in production: no development tools. tqdm (the command line's
    # bar, a runtime dependency since issue 20) is in it, never imported by the handler.
    assert not [n for n in names if re.search(r"fake_tmdb|local_map|csvgen|tmdb_devtools", n)]
    return names


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF"
    return int.from_bytes(data[18:20], "little")


@pytest.mark.slow
@pytest.mark.parametrize(("python", "arch"), [("3.12", "arm64"), ("3.12", "x86_64")])
def test_lambda_layer_builds_within_limits(tmp_path: Path, python: str, arch: str) -> None:
    path, zipped, unzipped = build_layer(tmp_path, python, arch)
    names = check_layer_zip(path, zipped, unzipped)
    machine = {"arm64": 183, "x86_64": 62}[arch]  # ELF e_machine: EM_AARCH64, EM_X86_64
    abi = f"cpython-{python.replace('.', '')}-{'aarch64' if arch == 'arm64' else 'x86_64'}"
    libraries = [n for n in names if n.endswith(".so")]
    assert libraries, "expected native extensions (aiohttp, multidict, yarl, ...)"
    with zipfile.ZipFile(path) as zf:
        for name in libraries:
            assert abi in name or ".abi3." in name, name
            with zf.open(name) as handle:
                assert _elf_machine(handle.read(20)) == machine, name


# --- the layer alone runs the code (slow) ---------------------------------------------------


@pytest.fixture(scope="module")
def local_layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer built for this machine (Python 3.11, x86_64), unzipped into an empty folder.

    Lambda runs 3.12/3.13, but native wheels only import in the Python they were built for,
    and this machine has 3.11: build.py accepts --python 3.11 for exactly this test.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    arch = {"x86_64": "x86_64", "aarch64": "arm64"}[os.uname().machine]
    out = tmp_path_factory.mktemp("layer-dist")
    path, zipped, unzipped = build_layer(out, version, arch)
    check_layer_zip(path, zipped, unzipped)
    opt = tmp_path_factory.mktemp("opt")
    assert not any(opt.iterdir())
    with zipfile.ZipFile(path) as zf:
        zf.extractall(opt)
    site = opt / "python"
    found = [p for p in site.rglob("*") if p.suffix in {".pyc", ".pyo"} or p.name == "__pycache__"]
    assert not found
    return site


@pytest.fixture
def moto_url(moto_endpoint: str) -> str:
    """The session's moto server (tests/conftest.py), emptied for this test."""
    import urllib.request

    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request).close()
    return moto_endpoint


def _aws_client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _isolated_env(site: Path, endpoint: str, home: Path, **extra: str) -> dict[str, str]:
    """Only the layer on the path, fake AWS credentials, nothing from the developer's shell."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHONPATH": str(site),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        **extra,
    }


def _run_isolated(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # -S: no site module, so no site-packages (the venv's or the system's) on sys.path; only
    # the standard library and PYTHONPATH (the unzipped layer), as in Lambda's /opt/python.
    return subprocess.run(
        [sys.executable, "-S", "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=env["HOME"],
        timeout=300,
        check=False,
    )


_IMPORT_AND_S3_ROUNDTRIP = """
import asyncio, json, sys
import aioboto3, aiobotocore, aiohttp, boto3, botocore, multidict, s3transfer, yarl

site = sys.argv[1]
modules = (aioboto3, aiobotocore, aiohttp, boto3, botocore, multidict, s3transfer, yarl)
outside = [m.__name__ for m in modules if not m.__file__.startswith(site)]
assert not outside, f"imported from outside the layer: {outside}"

async def main(bucket):
    async with aioboto3.Session().client("s3") as s3:
        got = await s3.get_object(Bucket=bucket, Key="layer-check/in.txt")
        body = await got["Body"].read()
        await s3.put_object(Bucket=bucket, Key="layer-check/out.txt", Body=body.upper())

asyncio.run(main(sys.argv[2]))
print(json.dumps({"botocore": botocore.__version__, "aiobotocore": aiobotocore.__version__}))
"""


@pytest.mark.slow
def test_layer_alone_imports_and_talks_to_s3(
    local_layer: Path, moto_url: str, tmp_path: Path
) -> None:
    from packaging.requirements import Requirement

    # botocore in the layer is the one aiobotocore requires (the runtime's would not be).
    def metadata(dist: str) -> Any:
        (info,) = local_layer.glob(f"{dist}-*.dist-info")
        return email.parser.Parser().parsestr((info / "METADATA").read_text(encoding="utf-8"))

    botocore_version = metadata("botocore")["Version"]
    pins = [Requirement(r) for r in metadata("aiobotocore").get_all("Requires-Dist") or []]
    (pin,) = [r for r in pins if r.name == "botocore" and not r.marker]
    assert pin.specifier.contains(botocore_version), f"botocore {botocore_version} vs {pin}"

    # Without the layer on the path, nothing third-party imports: the isolation is real.
    env = _isolated_env(local_layer, moto_url, tmp_path)
    bare = _run_isolated("import aiohttp", {**env, "PYTHONPATH": ""})
    assert bare.returncode != 0 and "ModuleNotFoundError" in bare.stderr

    s3 = _aws_client("s3", moto_url)
    s3.create_bucket(Bucket="layer-check")
    s3.put_object(Bucket="layer-check", Key="layer-check/in.txt", Body=b"hello from moto")
    result = _run_isolated(_IMPORT_AND_S3_ROUNDTRIP, env, str(local_layer), "layer-check")
    assert result.returncode == 0, result.stderr
    versions = json.loads(result.stdout.strip().splitlines()[-1])
    assert versions["botocore"] == botocore_version
    out = s3.get_object(Bucket="layer-check", Key="layer-check/out.txt")["Body"].read()
    assert out == b"HELLO FROM MOTO"


_INVOKE_HANDLER = """
import json, sys, time
import aiohttp, handler

site, event = sys.argv[1], json.loads(sys.argv[2])
assert handler.__file__.startswith(site) and aiohttp.__file__.startswith(site)

class Context:
    aws_request_id = "req-local"
    function_name = "tmdb-ingest"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:tmdb-ingest"
    def __init__(self, seconds):
        self._deadline = time.monotonic() + seconds
    def get_remaining_time_in_millis(self):
        return int((self._deadline - time.monotonic()) * 1000)

result = handler.lambda_handler(event, Context(float(sys.argv[3])))
print("RESULT " + json.dumps(result))
"""


@contextlib.contextmanager
def _fake_tmdb(token: str, tmp_path: Path) -> Iterator[str]:
    """The project's fake TMDB in its own process, on loopback; yields its base URL."""
    port_file = tmp_path / "fake-tmdb.port"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "tmdb_devtools.fake_tmdb"),
            *("--port", "0", "--token", token, "--port-file", str(port_file)),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"fake TMDB did not start: {proc.stderr}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_handler_roundtrip(
    site: Path, moto_url: str, tmp_path: Path, template: dict[str, Any]
) -> dict[str, Any]:
    """Run the state machine (the definition on disk, rendered with MaxItemsPerBatch 2) on
    moto's interpreter, its Lambda tasks answered by ``handler.lambda_handler`` running from
    the unzipped layer only (one ``python -S`` process a call, with the function's deadline).
    The function's environment is template.yaml's, resolved; the token comes from SSM.
    Returns what it saw, for the caller's assertions."""
    from tests.support.sfn import function_environment, template_parameters
    from tests.test_asl_on_moto import machine_on_moto

    bucket, token = "data-lake-x", "layer-test-token"
    fn_env = function_environment(template, template_parameters(template, DataLakeBucket=bucket))
    # The raw CSV: '|'-separated, one row per artist, so ids repeat on consecutive rows.
    ids = ["tt1000001", "tt1000002", "tt1000003", "tt1000004", "tt1000005"]
    rows = ["id|tituloPincipal|nomeArtista"]
    rows += [f"{i}|Filme {n}|Artista {a}" for n, i in enumerate(ids) for a in range(3)]
    source_key = "Raw/Local/CSV/Movies/2022/05/02/movies.csv"

    calls: list[tuple[dict[str, Any], dict[str, Any]]] = []
    failures: list[str] = []
    with _fake_tmdb(token, tmp_path) as tmdb_url:
        env = _isolated_env(site, moto_url, tmp_path, **fn_env, TMDB_BASE_URL=tmdb_url)

        def invoke(function: Any, event: Any) -> tuple[str, bool, str]:
            """``LambdaFunction._invoke_lambda``: the handler from the layer alone."""
            data = json.loads(event) if isinstance(event, str | bytes) else event
            done = _run_isolated(
                _INVOKE_HANDLER, env, str(site), json.dumps(data), str(function.timeout)
            )
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            if done.returncode != 0 or len(lines) != 1:
                failures.append(f"{data}:\n{done.stdout}\n{done.stderr}")
                error = {"errorType": "LayerRunFailed", "errorMessage": done.stderr[-500:]}
                return json.dumps(error), True, ""
            result = json.loads(lines[0].removeprefix("RESULT "))
            calls.append((data, result))
            return json.dumps(result), False, ""

        machine = machine_on_moto(moto_url, invoke, DataLakeBucket=bucket, MaxItemsPerBatch="2")
        with machine as harness:
            s3, ssm = _aws_client("s3", moto_url), _aws_client("ssm", moto_url)
            s3.put_object(Bucket=bucket, Key=source_key, Body="\n".join(rows).encode() + b"\n")
            ssm.put_parameter(
                Name=fn_env["TMDB_TOKEN_SSM_PARAMETER"], Value=token, Type="SecureString"
            )
            execution = harness.run(
                {"source_key": source_key, "kind": "movie", "date": "2022-05-02"}, timeout=300
            )
    assert not failures, "\n\n".join(failures)
    assert execution.status == "SUCCEEDED", (execution.error, execution.cause)
    prepares = [result for event, result in calls if event.get("action") == "prepare"]
    batches = [(event, result) for event, result in calls if "Items" in event]
    assert len(prepares) == 1 and len(calls) == 1 + len(batches)
    return {
        "bucket": bucket,
        "ids": ids,
        "prepared": prepares[0],
        "batches": batches,
        "output": execution.output,
    }


@pytest.mark.slow
def test_layer_runs_the_handler_like_the_state_machine(
    local_layer: Path, moto_url: str, tmp_path: Path, template: dict[str, Any]
) -> None:
    seen = _run_handler_roundtrip(local_layer, moto_url, tmp_path, template)
    prepared = seen["prepared"]
    assert prepared["unique_ids"] == len(seen["ids"])
    assert prepared["ids_key"].startswith("Raw/TMDB/_work/")
    # The Map read prepare's file: every id in exactly one batch, none cut by the deadline.
    assert sorted(i["id"] for event, _ in seen["batches"] for i in event["Items"]) == seen["ids"]
    assert all(len(event["Items"]) <= 2 for event, _ in seen["batches"])  # MaxItemsPerBatch
    for event, result in seen["batches"]:
        assert result["batch_input"] == event["BatchInput"]
        assert not result.get("remaining_items")
    assert sum(result["records"] for _, result in seen["batches"]) == len(seen["ids"])

    s3 = _aws_client("s3", moto_url)
    listed = s3.list_objects_v2(Bucket=seen["bucket"], Prefix="Raw/TMDB/JSON/2022/05/02/")
    data_keys = [o["Key"] for o in listed.get("Contents", []) if "/_" not in o["Key"]]
    assert data_keys, "no JSON data files were written"
    records = []
    for key in data_keys:
        loaded = json.loads(s3.get_object(Bucket=seen["bucket"], Key=key)["Body"].read())
        assert isinstance(loaded, list) and len(loaded) <= 100
        records += loaded
    assert len(records) == len(seen["ids"])
    everything = json.dumps([seen["prepared"], seen["batches"], seen["output"]])
    assert "layer-test-token" not in everything
