"""Compass-style CSV generator for tests, the demo sample and benchmarks.

Rows look like the bootcamp's movies.csv / series.csv: '|'-separated, one row per artist
(so ids repeat on consecutive rows), ``\\N`` for nulls, Portuguese accents, and quotes
inside fields. Ids are chosen with the fake TMDB's rule (``expected_kind``) so a movie file
holds movies, a series file holds series, and about 1 in 17 ids is unknown to TMDB.
"""

from __future__ import annotations

import random
from pathlib import Path

from tmdb_devtools.fake_tmdb import kind_of_number

MOVIE_HEADER = (
    "id|tituloPincipal|tituloOriginal|anoLancamento|tempoMinutos|genero|notaMedia|numeroVotos|"
    "generoArtista|personagem|nomeArtista|anoNascimento|anoFalecimento|profissao|"
    "titulosMaisConhecidos"
)
SERIES_HEADER = MOVIE_HEADER.replace("anoLancamento|", "anoLancamento|anoTermino|")

_TITLES = ["Ação na Cidade", "O Coração do Mar", "São Paulo à Noite", "Duro de Matar",
           "A Última Canção", "Ônibus 174", "Cidade de Deus", "Fé e Razão"]  # fmt: skip
_NAMES = ["João Araújo", "Maria da Conceição", "Zé Ninguém", "Ana Lúcia", "Bárbara Soares",
          "Renée O'Connor", "Jürgen Müller", "Chloë Grace"]  # fmt: skip
_CHARACTERS = ['"Dirty" Harry', "Self", "\\N", "Capitão Nascimento", 'Dr. "Doc" Brown',
               "Narrador", "Padre José"]  # fmt: skip


def kind_of(n: int) -> str | None:
    """What the fake TMDB says title number ``n`` is (its own rule, not a copy)."""
    return kind_of_number(n)


def title_ids(count: int, kind: str = "movie", start: int = 1_000_000) -> list[str]:
    """``count`` distinct ids of ``kind`` ("movie"/"tv"), with TMDB-unknown ids mixed in."""
    ids: list[str] = []
    n = start
    while len(ids) < count:
        k = kind_of(n)
        if k == kind or k is None:
            ids.append(f"tt{n:07d}")
        n += 1
    return ids


def rows_for(imdb_id: str, rng: random.Random, series: bool, artists: int) -> list[str]:
    title = rng.choice(_TITLES)
    year = str(rng.randint(1950, 2022))
    end = [rng.choice([str(int(year) + rng.randint(1, 9)), "\\N"])] if series else []
    common = [imdb_id, title, title, year, *end, str(rng.randint(20, 180)),
              rng.choice(["Drama", "Comedy,Drama", "Action,Crime", "Horror"]),
              f"{rng.uniform(1, 10):.1f}", str(rng.randint(5, 90000))]  # fmt: skip
    lines = []
    for _ in range(artists):
        person = [rng.choice("MF"), rng.choice(_CHARACTERS), rng.choice(_NAMES),
                  str(rng.randint(1920, 2000)), rng.choice(["\\N", "2019"]),
                  rng.choice(["actor", "actress", "director,writer"]),
                  "tt0000001,tt0000002"]  # fmt: skip
        lines.append("|".join(common + person))
    return lines


def write_csv(
    path: Path,
    ids: list[str],
    *,
    series: bool = False,
    seed: int = 7,
    max_artists: int = 4,
    newline: str = "\n",
) -> Path:
    """Write a Compass-style CSV with each id on 1..max_artists consecutive rows."""
    rng = random.Random(seed)
    lines = [SERIES_HEADER if series else MOVIE_HEADER]
    for imdb_id in ids:
        lines.extend(rows_for(imdb_id, rng, series, rng.randint(1, max_artists)))
    path.write_text(newline.join(lines) + newline, encoding="utf-8")
    return path
