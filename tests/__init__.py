"""Helpers shared by the test suites and the benchmarks: real processes, real Redis, faults.

Not part of the application (the Docker image leaves this folder out). `processes` needs
no Django; the other modules run inside a configured Django (pytest, a benchmark).
"""
