"""Reasoning trees: the node model, parquet schema, and long-thought derivation."""
