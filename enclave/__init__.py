"""Enclave: a local RAG server over enterprise documents."""

__version__ = "0.1.0"
