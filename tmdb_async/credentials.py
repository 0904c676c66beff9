"""TMDB credentials: where they come from, and how they never leak."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from tmdb_async.errors import CredentialsError

CREDENTIAL_VARIABLES = ("TMDB_READ_ACCESS_TOKEN", "TMDB_API_KEY")


@dataclass(frozen=True, slots=True)
class Credentials:
    """The TMDB secret. ``repr`` never shows it, so it cannot leak through logs of objects."""

    read_access_token: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Credentials:
        """The credentials of the environment, surrounding whitespace stripped; a value with
        a control, space or non-ASCII character inside is a :class:`CredentialsError`."""
        env = os.environ if env is None else env
        return cls(
            read_access_token=clean_secret(
                env.get("TMDB_READ_ACCESS_TOKEN"), "TMDB_READ_ACCESS_TOKEN"
            ),
            api_key=clean_secret(env.get("TMDB_API_KEY"), "TMDB_API_KEY"),
        )

    @property
    def secret(self) -> str | None:
        """The value that must never be printed (for redaction filters)."""
        return self.read_access_token or self.api_key

    def require(self) -> None:
        if not self.secret:
            raise CredentialsError(
                "no TMDB credentials: set TMDB_READ_ACCESS_TOKEN (preferred) or TMDB_API_KEY"
            )

    def headers(self) -> dict[str, str]:
        # Bearer keeps the secret out of URLs, which aiohttp prints in its exceptions.
        if self.read_access_token:
            return {"Authorization": f"Bearer {self.read_access_token}"}
        return {}

    def params(self) -> dict[str, str]:
        if not self.read_access_token and self.api_key:
            return {"api_key": self.api_key}
        return {}

    def __repr__(self) -> str:
        kind = "bearer" if self.read_access_token else "api_key" if self.api_key else "none"
        return f"Credentials({kind}=***)"


def clean_secret(value: str | None, variable: str) -> str | None:
    """``value`` without surrounding whitespace (a pasted ``\\r`` or newline), ``None`` when
    empty. A control, space or non-ASCII character inside is a :class:`CredentialsError`
    naming ``variable``, never the value."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not all("!" <= char <= "~" for char in value):
        raise CredentialsError(
            # "NAME contains", not "NAME: …": "TMDB_API_KEY: <text>" looks like a leaked key
            # to the redaction patterns, which would mask the explanation.
            f"{variable} contains a space, control or non-ASCII character; "
            "set it to the TMDB credential alone"
        )
    return value


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Every spelling of the credentials in ``env`` (as given and stripped), to be masked."""
    env = os.environ if env is None else env
    values: list[str] = []
    for variable in CREDENTIAL_VARIABLES:
        raw = env.get(variable) or ""
        values += [v for v in (raw, raw.strip()) if v and v not in values]
    return values
