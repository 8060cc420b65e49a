"""Benchmarks of asset-webhooks: ``make bench`` (or ``python -m bench [--quick] [--only NAME ...]``)."""
