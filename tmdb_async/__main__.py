"""``python -m tmdb_async``: see :mod:`tmdb_async.cli`."""

import sys

from tmdb_async.cli import main

if __name__ == "__main__":
    sys.exit(main())
