"""Benchmark suite for tmdb-ingest: how close a run gets to TMDB's rate limit, and at what cost.

Every figure is a *ratio* of two things measured side by side in the same invocation, because
the machines this runs on are shared and noisy: absolute seconds move from run to run, the
ratio of two neighbouring measurements much less.

Run it from the repository root (the current directory is then on ``sys.path``)::

    python -m benchmarks            # full run: results/latest.json, results/scaling.png
                                    # and the table in BENCHMARKS.md
    python -m benchmarks --quick    # seconds-long smoke version (used by the test suite)

Layout of one invocation:

- the fake TMDB runs in its own process on loopback (:mod:`benchmarks.fake_server`), so its
  CPU time does not compete with the client's event loop;
- each measured client (:mod:`benchmarks.clients`: the engine, a bare aiohttp loop, the seeds'
  sequential urllib loop) runs in a fresh child process (``python -m benchmarks.child SPEC``,
  started by :mod:`benchmarks.runner`), so its CPU time (``getrusage``) and peak RSS
  (``VmHWM``) belong to that run alone; it prints one JSON line;
- one module per scenario in :mod:`benchmarks.scenarios`; :mod:`benchmarks.report` turns the
  result into target rows and the Markdown table, :mod:`benchmarks.chart` draws the chart.

Project code is imported where it is used (``tmdb_async`` in the clients, ``handler`` in the
cold start); the project's dev tools (fake TMDB, CSV generator) only through
:mod:`benchmarks._project`. See ``benchmarks/BENCHMARKS.md`` for what each figure means.

This file stays free of imports: every child process imports the package first.
"""
