"""What the fake TMDB was asked, per title, whatever the path.

A title can be asked for by ``/3/find/tt…``, ``/3/movie/tt…`` (its IMDb id) or
``/3/{movie|tv}/{tmdb_id}``; the fake's TMDB id of ``tt`` + n is n (see
:func:`tmdb_devtools.fake_tmdb.kind_of_number`), so every path names one title.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

_PATH = re.compile(r"^/3/(?:find|movie|tv)/(?:tt)?(\d+)$")


def titles_asked(path_counts: Mapping[str, int]) -> Counter[str]:
    """Requests per title (``tt`` + at least 7 digits), from the fake's ``path_counts``."""
    asked: Counter[str] = Counter()
    for path, hits in path_counts.items():
        match = _PATH.match(path)
        if match is not None:
            asked[f"tt{int(match.group(1)):07d}"] += hits
    return asked
