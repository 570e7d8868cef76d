"""Benchmarks: gateway overhead and model throughput, side by side with the alternatives.

Run with ``./scripts/bench.sh`` (``--quick`` for a short smoke run). Not part of the pass/fail
tests: every server runs as a real process on loopback, numbers are medians of repeated runs,
and the report goes to ``docs/benchmarks.md`` and ``docs/benchmarks.png``.
"""
