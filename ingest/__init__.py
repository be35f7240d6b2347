"""Ingestion: sources -> parse -> clean -> chunk (token-bounded) -> embed -> store.

Importing this package loads neither torch nor unstructured; the stages import what they need.
"""
