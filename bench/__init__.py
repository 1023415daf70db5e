"""Benchmarks: each module prints one JSON object on stdout (progress on stderr).

They measure and report; they never pass or fail on time.
"""
