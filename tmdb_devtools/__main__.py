"""``python -m tmdb_devtools {fake-tmdb | local-map | schema} [options]``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command, rest = (args[0], args[1:]) if args else ("", [])
    if command == "fake-tmdb":
        from .fake_tmdb import main as fake_main

        return fake_main(rest)
    if command == "local-map":
        from .local_map import main as local_map_main

        return local_map_main(rest)
    if command == "schema":
        from .schema import main as schema_main

        return schema_main(rest)
    usage = "usage: python -m tmdb_devtools {fake-tmdb | local-map | schema} [options] (--help)"
    if command in ("-h", "--help"):
        print(usage)
        return 0
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
