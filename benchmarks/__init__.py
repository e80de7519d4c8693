"""Benchmark harness: peer methods and simulation drivers."""
