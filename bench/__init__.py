"""Reproducible benchmarks: ``python -m bench all [--quick]`` or ``python -m bench NAME``.

Every scenario starts its own loopback server processes on a database it prepared itself,
measures our code next to a baseline served by the same server and channel layer, stops
everything it started, and reports figures and ratios (docs/benchmarks.md).
"""
