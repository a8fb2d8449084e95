"""Benchmarks for fedi. They print figures; they are not tests and never fail on timing.

Run from the repository root, e.g. ``python -m bench.fanout`` or ``python -m bench.inbox``;
see bench/README.md.
"""
