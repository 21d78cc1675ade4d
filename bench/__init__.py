"""Benchmarks run by `make bench` (issue 6): end-to-end throughput against bare paho,
in-process dispatch cost, worker memory. See bench/run.py."""
