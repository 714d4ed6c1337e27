"""Benchmarks (`make bench`): a tool, not tests. See bench/__main__.py."""
