"""Datasets: procedural rendering, importers, shards, streaming."""
