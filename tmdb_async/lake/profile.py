"""What makes a record what it is: the settings a run fetched it with.

Two runs of one shape fetch the same thing, so the second keeps the first's ids (the ledger
records each id's shape); the lake's id map keeps each title's profile, so that a refresh
fetches it again the way it was ingested.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tmdb_async.lake.layout import digest


@dataclass(frozen=True, slots=True)
class Profile:
    """The record settings of a run: kind, detail, language, append_to_response, format."""

    kind: str
    detail: str
    language: str
    append_to_response: tuple[str, ...]
    output_format: str

    @classmethod
    def of(cls, settings: Any) -> Profile:
        """The profile of a :class:`~tmdb_async.settings.Settings` (or anything with its names)."""
        return cls(
            settings.kind,
            settings.detail,
            settings.language,
            tuple(settings.append_to_response),
            settings.output_format,
        )

    @property
    def shape(self) -> str:
        """The digest the ledger keeps per id (what ``resume`` compares)."""
        return digest(
            [
                self.kind,
                self.detail,
                self.language,
                list(self.append_to_response),
                self.output_format,
            ]
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "detail": self.detail,
            "language": self.language,
            "append_to_response": list(self.append_to_response),
            "output_format": self.output_format,
        }

    @classmethod
    def from_manifest(cls, settings: Mapping[str, Any]) -> Profile | None:
        """The profile of a run's manifest ``settings`` (its public names), or None when
        they do not say."""
        try:
            return cls.from_json({**settings, "output_format": settings["format"]})
        except (KeyError, TypeError):
            return None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Profile:
        return cls(
            str(data["kind"]),
            str(data["detail"]),
            str(data["language"]),
            tuple(str(a) for a in data["append_to_response"]),
            str(data["output_format"]),
        )
