"""Enclave HTTP server: OpenAI-compatible API over the RAG service, plus the web UI."""
