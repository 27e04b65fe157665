"""Benchmarks of the whole system (see docs/benchmarks.md); run them from the repository root."""
