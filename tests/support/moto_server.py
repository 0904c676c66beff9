"""moto's server in this process (``ThreadedMotoServer``), as the tests and benchmarks run it.

S3, SSM, Lambda and Step Functions all go through it over HTTP on loopback, because
aiobotocore cannot use the in-process ``mock_aws``.

One narrow speed-up, behaviour unchanged: moto 5.2.5's dispatcher
(``moto_server/werkzeug_app.py``, ``get_backend_for_host``) calls
``moto.backends.list_of_moto_modules()`` for every request whose host it has to infer (all of
ours: they go to ``127.0.0.1``), and that function lists moto's package folder and stats each
of its ~200 entries, under the dispatcher's global lock. With eight Lambda runtimes writing
to it at once it was a third of the server's CPU and serialised every request (measured with
py-spy on the fleet benchmark: 12.6 CPU-s of the server's 27 s run, 8.6 with the listing
cached). The folder does not change while the process runs, so the listing is read once.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.request
from collections.abc import Iterator


def _cache_module_listing() -> None:
    import moto.backends as backends

    if getattr(backends, "_tmdb_ingest_cached", False):
        return
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]
    backends._tmdb_ingest_cached = True  # type: ignore[attr-defined]


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1 with a free port, empty; yields its endpoint URL.

    moto's backends are global to the process, so a server started after another one would
    see its resources: the state is reset first."""
    from moto.server import ThreadedMotoServer

    _cache_module_listing()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    reset = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset).close()
    try:
        yield endpoint
    finally:
        server.stop()
