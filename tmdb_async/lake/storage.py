"""Where bytes live: local paths and ``s3://bucket/key`` behind one small interface.

Reading streams a source in chunks: S3 objects are read with ranged GETs pinned to the
object's ETag, so a run that paces itself at TMDB's rate for an hour never holds one S3
connection open that long, and a file replaced mid-run is detected instead of mixed.

Writing is whole-object only: an S3 PUT is atomic, and a local write goes to a hidden
temporary name in the same folder and is renamed, so readers never see half a file.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import fcntl
import hashlib
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tmdb_async.errors import Conflict, InputError, StorageError

READ_CHUNK = 8 << 20  # bytes per S3 ranged GET
# Bytes handed to the reader at a time: each block is briefly held several times over
# (bytes, decoded text, its lines), so smaller blocks keep the peak memory low.
LOCAL_CHUNK = 256 << 10


@dataclass(frozen=True, slots=True)
class S3Url:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"


def parse_s3(url: str, where: str) -> S3Url | None:
    """``S3Url`` for an ``s3://`` URL, ``None`` for a local path."""
    if not url.startswith("s3://"):
        return None
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise InputError(f"{where}: {url!r} has no bucket name")
    return S3Url(bucket, key)


def s3_error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore error (``NoSuchKey``, ``403``, …), else its class name."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", type(exc).__name__))


async def read_source(source: str, s3: Any | None) -> AsyncIterator[bytes]:
    """Yield the bytes of a local file or S3 object in chunks.

    A missing or unreadable source is bad input (:class:`InputError`), named with its path.
    """
    url = parse_s3(source, "source")
    if url is None:
        async for chunk in _read_local(source):
            yield chunk
        return
    if s3 is None:  # pragma: no cover - the pipeline always opens a client for s3:// URLs
        raise StorageError("source: an S3 client is needed for s3:// sources")
    async for chunk in _read_s3(url, s3):
        yield chunk


async def _read_local(path: str) -> AsyncIterator[bytes]:
    """Every OS error is one line naming the path (a symlink loop, a path under a file, a
    name over 255 bytes, an I/O error while reading), never a traceback."""
    try:
        handle = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a CSV file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise InputError(f"{path}: cannot open: {_reason(exc)}") from None
    try:
        while True:
            try:
                chunk = await asyncio.to_thread(handle.read, LOCAL_CHUNK)
            except OSError as exc:
                raise InputError(f"{path}: cannot read: {_reason(exc)}") from None
            if not chunk:
                break
            yield chunk
    finally:
        handle.close()


def _reason(exc: BaseException) -> str:
    """What an OS error says, without the path it repeats (the message names it first)."""
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


async def _read_s3(url: S3Url, s3: Any) -> AsyncIterator[bytes]:
    start = 0
    etag: str | None = None
    while True:
        kwargs: dict[str, Any] = {
            "Bucket": url.bucket,
            "Key": url.key,
            "Range": f"bytes={start}-{start + READ_CHUNK - 1}",
        }
        if etag:
            kwargs["IfMatch"] = etag
        try:
            response = await s3.get_object(**kwargs)
            async with response["Body"] as body:
                data = await body.read()
        except Exception as exc:
            code = s3_error_code(exc)
            if code == "InvalidRange":  # empty object, or a size that is a multiple of the chunk
                return
            if code in ("NoSuchKey", "NoSuchBucket", "404"):
                raise InputError(f"{url}: no such S3 object ({code})") from None
            if code in ("AccessDenied", "403"):
                raise InputError(f"{url}: access denied reading the source") from None
            if code in ("PreconditionFailed", "412"):
                raise InputError(f"{url}: the object changed while it was being read") from None
            raise StorageError(f"{url}: cannot read the source: {code}") from None
        etag = response.get("ETag", etag)
        for piece in range(0, len(data), LOCAL_CHUNK):
            yield data[piece : piece + LOCAL_CHUNK]
        total = _total_size(response.get("ContentRange"))
        start += len(data)
        if not data or total is None or start >= total:
            return


def _total_size(content_range: str | None) -> int | None:
    # "bytes 0-99/1234" -> 1234
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else None


@contextlib.asynccontextmanager
async def open_s3(needed: bool, pool: int) -> AsyncIterator[Any]:
    """One aioboto3 S3 client per run, inside the running loop; ``None`` if not needed."""
    if not needed:
        yield None
        return
    import aioboto3  # imported lazily: local runs do not pay for boto's import time
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 8, "mode": "standard"},  # 500/503 SlowDown/resets retried
        max_pool_connections=max(10, pool),
        connect_timeout=10,
        read_timeout=60,
    )
    async with aioboto3.Session().client("s3", config=config) as s3:
        yield s3


@contextlib.asynccontextmanager
async def open_store(dest: str, pool: int = 10) -> AsyncIterator[Store]:
    """The destination ``dest`` names (a folder or ``s3://bucket[/prefix]``), for commands
    that need nothing else (the id map's rebuild); a run opens its own (see pipeline)."""
    url = parse_s3(dest, "dest")
    async with open_s3(url is not None, pool) as s3:
        yield S3Store(s3, url) if url is not None else LocalStore(dest)


class Store(Protocol):
    """A destination: a local folder or an S3 bucket and prefix.

    Plain writes are whole-object and atomic; ``durable=False`` lets a local write skip the
    flush to disk, for content that is worthless after a power cut (a lock, a marker whose
    loss only repeats idempotent work). Conditional writes (``if_none_match``: create
    only if absent; ``if_match``: replace only the version with that ETag) raise
    :class:`Conflict` when the condition fails.
    """

    def url(self, key: str) -> str: ...

    async def put(self, key: str, data: bytes, content_type: str) -> str: ...

    async def write(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/json",
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        durable: bool = True,
    ) -> str: ...

    async def get(self, key: str) -> bytes | None: ...

    async def read(self, key: str) -> tuple[bytes, str] | None: ...

    async def delete(self, key: str, *, if_match: str | None = None) -> None: ...

    async def list(self, prefix: str, start_after: str | None = None) -> list[str]: ...

    async def copy(self, src_key: str, dst_key: str, *, if_none_match: bool = True) -> str | None:
        """Give ``dst_key`` the bytes of ``src_key`` without sending them again (a
        server-side copy, a hard link): the ETag of ``dst_key``, or ``None`` when
        ``src_key`` is gone. With ``if_none_match``, :class:`Conflict` when ``dst_key``
        exists (create only)."""
        ...


async def write_once(
    store: Store,
    key: str,
    data: bytes,
    content_type: str = "application/json",
    *,
    if_none_match: bool = False,
    if_match: str | None = None,
    durable: bool = True,
) -> str:
    """A conditional write that recognises its own first attempt.

    When S3 applies a write but its answer is lost (a 500 or a reset after the write landed),
    botocore sends it again, and the condition of the retry fails *because of the first
    attempt*. So a :class:`Conflict` is checked against what is there: the same bytes mean
    the write landed and its ETag is returned. Callers make every conditional body unique
    (a lease names its holder and renewal, a commit its writer and number), so equal bytes
    are never another writer's.
    """
    try:
        return await store.write(
            key,
            data,
            content_type,
            if_none_match=if_none_match,
            if_match=if_match,
            durable=durable,
        )
    except Conflict:
        found = await store.read(key)
        if found is not None and found[0] == data:
            return found[1]
        raise


async def delete_once(store: Store, key: str, *, if_match: str) -> None:
    """A conditional delete that recognises its own first attempt: a retry of a delete that
    landed fails its condition on a missing object, which is what was asked."""
    try:
        await store.delete(key, if_match=if_match)
    except Conflict:
        if await store.read(key) is not None:
            raise


async def read_range(store: Store, key: str, start: int, end: int) -> tuple[bytes, str] | None:
    """Bytes ``start`` … ``end - 1`` of ``key`` (fewer at its end) and a tag that changes
    when the object is replaced; ``None`` when it is not there. S3 and a folder read only
    that part; a store that cannot reads the whole object."""
    ranged = getattr(store, "read_part", None)
    if ranged is not None:
        found: tuple[bytes, str] | None = await ranged(key, start, end)
        return found
    whole = await store.read(key)
    return None if whole is None else (whole[0][start:end], whole[1])


def md5_hex(data: bytes) -> str:
    """The MD5 of ``data`` in hex: S3's ETag of a single-part upload, so the ETag of a
    folder's file and of every store that imitates S3; what a commit records of a new file."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class _Derived:
    """``put`` and ``get``, the plain forms of ``write`` and ``read``, for both stores."""

    def url(self, key: str) -> str:
        raise NotImplementedError

    async def write(self, key: str, data: bytes, content_type: str = "application/json") -> str:
        raise NotImplementedError

    async def read(self, key: str) -> tuple[bytes, str] | None:
        raise NotImplementedError

    async def put(self, key: str, data: bytes, content_type: str) -> str:
        await self.write(key, data, content_type)
        return self.url(key)

    async def get(self, key: str) -> bytes | None:
        found = await self.read(key)
        return None if found is None else found[0]


class LocalStore(_Derived):
    """A folder; keys are relative paths under it.

    Conditional operations hold an exclusive ``flock`` on a hidden file at the root while
    they compare and replace, so they are atomic between processes; the kernel drops the
    lock when its holder dies, even by SIGKILL. ETags are MD5 digests of the content.
    """

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    async def check_root(self) -> None:
        """The folder is usable: a directory, or nothing yet (made by the first write). A
        path the OS refuses (a symlink loop, under a file, a name over 255 bytes) is one
        :class:`StorageError` line naming it, before anything is read: not a warning about
        the first file tried, then the error of the next."""
        try:
            info = await asyncio.to_thread(os.stat, self.root)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"{self.root}: cannot write: {_reason(exc)}") from None
        if not stat.S_ISDIR(info.st_mode):
            raise StorageError(f"{self.root}: cannot write: Not a directory")

    def url(self, key: str) -> str:
        return str(self.root / key)

    async def write(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/json",
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        durable: bool = True,
    ) -> str:
        if if_none_match or if_match is not None:
            return await asyncio.to_thread(
                self._write_if, key, data, if_none_match, if_match, durable
            )
        return await asyncio.to_thread(self._put, key, data, durable)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / ".tmdb-ingest.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StorageError(f"{self.root}: cannot write: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _write_if(
        self, key: str, data: bytes, if_none_match: bool, if_match: str | None, durable: bool
    ) -> str:
        with self._exclusive():
            current = self._read(key)
            if if_none_match and current is not None:
                raise Conflict(key)
            if if_match is not None and (current is None or current[1] != if_match):
                raise Conflict(key)
            return self._put(key, data, durable)

    def _put(self, key: str, data: bytes, durable: bool = True) -> str:
        path = self.root / key
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    if durable:
                        handle.flush()
                        os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise StorageError(f"{path}: cannot write: {exc.strerror or exc}") from None
        return md5_hex(data)

    async def read(self, key: str) -> tuple[bytes, str] | None:
        return await asyncio.to_thread(self._read, key)

    async def read_part(self, key: str, start: int, end: int) -> tuple[bytes, str] | None:
        """See :func:`read_range`: the tag is the file's inode, size and modification time
        (a replacement is a rename, so a new inode)."""
        return await asyncio.to_thread(self._read_part, key, start, end)

    def _read_part(self, key: str, start: int, end: int) -> tuple[bytes, str] | None:
        path = self.root / key
        try:
            with path.open("rb") as file:
                info = os.fstat(file.fileno())
                file.seek(start)
                data = file.read(max(0, end - start))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"{path}: cannot read: {exc.strerror or exc}") from None
        return data, f"{info.st_ino}-{info.st_size}-{info.st_mtime_ns}"

    def _read(self, key: str) -> tuple[bytes, str] | None:
        path = self.root / key
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"{path}: cannot read: {exc.strerror or exc}") from None
        return data, md5_hex(data)

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        if if_match is None:
            await asyncio.to_thread(self._delete, key)
            return

        def conditional() -> None:
            with self._exclusive():
                current = self._read(key)
                if current is None or current[1] != if_match:
                    raise Conflict(key)
                self._delete(key)

        await asyncio.to_thread(conditional)

    def _delete(self, key: str) -> None:
        path = self.root / key
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"{path}: cannot delete: {exc.strerror or exc}") from None

    async def copy(self, src_key: str, dst_key: str, *, if_none_match: bool = True) -> str | None:
        """A hard link: no byte is written again, and ``os.link`` fails when the name
        exists, so create-only is atomic without the folder's lock. Every write replaces a
        file by renaming a new one over it, so the two names never share a later change."""
        return await asyncio.to_thread(self._copy, src_key, dst_key, if_none_match)

    def _copy(self, src_key: str, dst_key: str, if_none_match: bool) -> str | None:
        src, dst = self.root / src_key, self.root / dst_key
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if if_none_match:
                try:
                    os.link(src, dst)
                except FileExistsError:
                    raise Conflict(dst_key) from None
            else:
                tmp = dst.parent / f".{dst.name}.{os.getpid()}.link"
                tmp.unlink(missing_ok=True)
                os.link(src, tmp)
                os.replace(tmp, dst)
        except FileNotFoundError:
            return None  # the source is gone (the destination's folder was just made)
        except OSError as exc:
            raise StorageError(f"{dst}: cannot copy {src_key}: {_reason(exc)}") from None
        found = self._read(dst_key)
        return None if found is None else found[1]

    async def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        """Keys starting with ``prefix``, recursively and sorted, like an S3 listing."""
        keys = await asyncio.to_thread(self._list, prefix)
        return keys if start_after is None else [k for k in keys if k > start_after]

    def _list(self, prefix: str) -> builtins.list[str]:
        base = self.root / prefix.rpartition("/")[0]
        try:
            if not base.is_dir():
                return []
        except OSError as exc:  # a name too long; is_dir already says False for the rest
            raise StorageError(f"{base}: cannot list: {_reason(exc)}") from None

        def failed(exc: OSError) -> None:
            # A folder that cannot be read would be a listing with keys missing (a gap in a
            # ledger's log, a data file not learned): fail instead. One that vanished holds
            # nothing to list.
            if not isinstance(exc, FileNotFoundError | NotADirectoryError):
                raise StorageError(f"{exc.filename or base}: cannot list: {_reason(exc)}")

        keys = []
        for folder, _, names in os.walk(base, onerror=failed):
            for name in names:
                key = (Path(folder) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix) and not name.startswith("."):
                    keys.append(key)
        return sorted(keys)


_CONFLICT_CODES = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


class S3Store(_Derived):
    """A bucket and optional prefix; keys are appended to the prefix."""

    def __init__(self, s3: Any, url: S3Url) -> None:
        self._s3 = s3
        self.bucket = url.bucket
        self.prefix = url.key.strip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _fail(self, action: str, key: str, exc: Exception) -> StorageError:
        code = s3_error_code(exc)
        hint = {
            "NoSuchBucket": "the bucket does not exist",
            "AccessDenied": "access denied",
            "403": "access denied",
        }.get(code, code)
        return StorageError(f"{self.url(key)}: cannot {action}: {hint}")

    async def write(
        self,
        key: str,
        data: bytes,
        content_type: str = "application/json",
        *,
        if_none_match: bool = False,
        if_match: str | None = None,
        durable: bool = True,  # every S3 write is durable
    ) -> str:
        kwargs: dict[str, Any] = {}
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        try:
            response = await self._s3.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType=content_type,
                **kwargs,
            )
        except Exception as exc:
            if kwargs and s3_error_code(exc) in (*_CONFLICT_CODES, "NoSuchKey", "404"):
                raise Conflict(key) from None
            raise self._fail("write", key, exc) from None
        return str(response.get("ETag", "")).strip('"')

    async def read(self, key: str) -> tuple[bytes, str] | None:
        return await self._get(key)

    async def read_part(self, key: str, start: int, end: int) -> tuple[bytes, str] | None:
        """See :func:`read_range`: a ranged GET; the tag is the object's ETag."""
        return await self._get(key, Range=f"bytes={start}-{end - 1}")

    async def _get(self, key: str, **ranged: str) -> tuple[bytes, str] | None:
        try:
            response = await self._s3.get_object(Bucket=self.bucket, Key=self._key(key), **ranged)
            async with response["Body"] as body:
                data: bytes = await body.read()
        except Exception as exc:
            code = s3_error_code(exc)
            if code in ("NoSuchKey", "404"):
                return None
            if ranged and code == "InvalidRange":  # start at or past the end
                return b"", ""
            raise self._fail("read", key, exc) from None
        return data, str(response.get("ETag", "")).strip('"')

    async def delete(self, key: str, *, if_match: str | None = None) -> None:
        kwargs: dict[str, Any] = {} if if_match is None else {"IfMatch": if_match}
        try:
            await self._s3.delete_object(Bucket=self.bucket, Key=self._key(key), **kwargs)
        except Exception as exc:
            if kwargs and s3_error_code(exc) in (*_CONFLICT_CODES, "NoSuchKey", "404"):
                raise Conflict(key) from None
            raise self._fail("delete", key, exc) from None

    async def copy(self, src_key: str, dst_key: str, *, if_none_match: bool = True) -> str | None:
        """``CopyObject``: S3 copies the bytes (and the content type) inside the bucket, so
        nothing is uploaded again. ``IfNoneMatch="*"`` makes it create-only on S3 (moto
        5.2.5 ignores it: docs/aws-and-tooling.md)."""
        kwargs: dict[str, Any] = {"IfNoneMatch": "*"} if if_none_match else {}
        try:
            response = await self._s3.copy_object(
                Bucket=self.bucket,
                Key=self._key(dst_key),
                CopySource={"Bucket": self.bucket, "Key": self._key(src_key)},
                **kwargs,
            )
        except Exception as exc:
            code = s3_error_code(exc)
            if code in ("NoSuchKey", "404"):
                return None
            if kwargs and code in _CONFLICT_CODES:
                raise Conflict(dst_key) from None
            raise self._fail(f"copy {src_key} to", dst_key, exc) from None
        etag = response.get("CopyObjectResult", {}).get("ETag", "")
        return str(etag).strip('"')

    async def list(self, prefix: str, start_after: str | None = None) -> list[str]:
        keys: list[str] = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._key(prefix)}
        if start_after is not None:
            kwargs["StartAfter"] = self._key(start_after)
        try:
            paginator = self._s3.get_paginator("list_objects_v2")
            async for page in paginator.paginate(**kwargs):
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        except Exception as exc:
            raise self._fail("list", prefix, exc) from None
        return sorted(keys)
