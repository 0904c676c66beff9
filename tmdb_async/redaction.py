"""The one redaction point: every text that leaves the process passes through this module.

The TMDB credential (a Bearer "API Read Access Token" or a v3 ``api_key``) must never be
written anywhere. The sinks, and what each must use:

- **run manifests** (the ``error`` field) and **summaries**: :func:`describe_error` for an
  exception, :func:`redact` for any other text;
- **sidecar reasons** (``failed`` entries in ``_sidecars/``): built by the client with
  :func:`describe_error`, so they are already safe;
- **logs**: the filter of :mod:`tmdb_async.log` calls :func:`redact` on every record of every
  library (message, exception text, stack);
- **stderr** (the CLI's one-line errors, redacted tracebacks) and the **--json** line;
- **Lambda errors** (the message of the exception the handler raises) and its logs.

Two layers of masking, both in :func:`redact`:

1. each secret given to :func:`register_secret` (the token, the key, also their URL-encoded
   forms) is replaced by ``***`` wherever it appears;
2. patterns that carry a credential are masked even when nothing was registered: the value of
   ``api_key=…`` (query strings, ``'api_key': '…'`` in a dict), the token after ``Bearer``,
   and any other ``Authorization`` header value.

:func:`describe_error` turns an exception into one bounded line, ``ClassName: message``, that
never holds a ``repr`` of a request (aiohttp's ``ClientResponseError`` repr carries every
request header, ``Authorization`` included) nor a URL query string (its ``str`` carries the
full URL, ``api_key`` included).

Standard library only, imported by :mod:`tmdb_async.log`: keep it cheap to import.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote, quote_plus

__all__ = [
    "MASK",
    "describe_error",
    "redact",
    "register_secret",
    "registered_secrets",
    "safe_url",
]

MASK = "***"
_MIN_SECRET = 4  # shorter values would mask ordinary text everywhere

_SECRETS: set[str] = set()
_ORDERED: tuple[str, ...] = ()  # longest first: a secret inside another is masked after it


class _Patterns:
    """The regular expressions, compiled on first use (~2 ms at import, on every cold start)."""

    def __init__(self) -> None:
        ignore = re.IGNORECASE
        # A quick test before the substitutions: most texts hold none of these words.
        self.suspect = re.compile(r"api_key|bearer|authorization", ignore)
        # api_key=VALUE, api_key%3DVALUE, 'api_key': 'VALUE', "api_key": "VALUE" (also after
        # an encoded ? or &)
        self.api_key = re.compile(
            r"""((?:(?<![a-z0-9])|(?<=%3F)|(?<=%26))api_key["']?\s*(?:=|%3D|:)\s*["']?)"""
            r"""[^\s&"'<>,;)}\]]+""",
            ignore,
        )
        # Bearer TOKEN, Bearer%20TOKEN, Bearer+TOKEN (the token: anything up to a delimiter)
        self.bearer = re.compile(
            r"""((?<![a-z])bearer(?:\s+|%20|\+))(?!\*\*\*)[^\s"'<>,;)}\]]+""", ignore
        )
        # Authorization: <another scheme> VALUE -> the whole value, up to a quote or line end
        self.authorization = re.compile(
            r"""(\bauthorization["']?\s*[:=]\s*["']?)(?![\s"']*(?:bearer\b|\*\*\*))"""
            r"""[^\s"'][^"'\r\n,;)}\]]*""",
            ignore,
        )
        # A query string: '?' then name=value pairs, up to whitespace, a quote or a bracket.
        self.query = re.compile(r"""\?[^\s"'<>#]*=[^\s"'<>#]*""")
        # Where a message starts printing objects of a request or response (headers and all).
        self.object_dump = re.compile(
            r"RequestInfo\(|RawResponseMessage\(|RawRequestMessage\(|CIMultiDict"
            r"|<ClientResponse|<ClientRequest|\bheaders\s*=",
        )


@functools.cache
def _patterns() -> _Patterns:
    return _Patterns()


def register_secret(secret: str | None) -> None:
    """Mask ``secret`` (and its URL-encoded spellings) in every text :func:`redact` sees from
    now on. Values shorter than 4 characters are ignored: they would mask ordinary words."""
    global _ORDERED
    if not secret:
        return
    forms = {secret, secret.strip(), quote(secret, safe=""), quote_plus(secret)}
    new = {form for form in forms if len(form) >= _MIN_SECRET} - _SECRETS
    if new:
        _SECRETS.update(new)
        _ORDERED = tuple(sorted(_SECRETS, key=len, reverse=True))


def registered_secrets() -> bool:
    """Whether any secret was registered (the patterns apply either way)."""
    return bool(_ORDERED)


def redact(text: str) -> str:
    """``text`` with every registered secret and every credential-looking value masked."""
    if not text:
        return text
    for secret in _ORDERED:
        if secret in text:
            text = text.replace(secret, MASK)
    patterns = _patterns()
    if patterns.suspect.search(text) is None:
        return text
    text = patterns.api_key.sub(r"\1" + MASK, text)
    text = patterns.bearer.sub(r"\1" + MASK, text)
    return patterns.authorization.sub(r"\1" + MASK, text)


def safe_url(url: str) -> str:
    """``url`` as an operator may see it: scheme, host, port and path, without user info,
    query string or fragment (where credentials travel), and redacted."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        text = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:  # a malformed port or bracket: only the redacted text, cut short
        text = url.split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1][:200]
    return redact(text)


def describe_error(exc: BaseException, *, limit: int | None = 300, with_type: bool = True) -> str:
    """One line for an operator: ``ClassName: message``, redacted, at most ``limit``
    characters (``None``: no limit).

    The message is ``str(exc)``, never its ``repr``, cut where it would start dumping request
    or response objects, with URL query strings removed. For an aiohttp
    ``ClientResponseError`` (recognised by its ``request_info``) it is the status and the
    message only: its ``str`` holds the full URL. ``with_type=False`` leaves the class name
    out (for errors whose message is written for the operator already).
    """
    message = _message(exc)
    name = type(exc).__name__
    text = (f"{name}: {message}" if message else name) if with_type else (message or name)
    text = " ".join(redact(text).split())
    if limit is not None and len(text) > limit:
        text = text[: max(0, limit - 1)].rstrip() + "…"
    return text


def _message(exc: BaseException) -> str:
    try:
        if getattr(exc, "request_info", None) is not None:  # aiohttp.ClientResponseError
            status = getattr(exc, "status", 0)
            detail = str(getattr(exc, "message", "") or "")
            message = f"{status}, {detail}" if status else detail
        else:
            message = str(exc)
    except Exception:  # a broken __str__ must not hide the error itself
        return ""
    patterns = _patterns()
    dump = patterns.object_dump.search(message)
    if dump is not None:
        message = message[: dump.start()].rstrip(" ,(=") + " …"
    return patterns.query.sub("", message).strip()
