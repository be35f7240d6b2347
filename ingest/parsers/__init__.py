"""Format-specific extractors used by :mod:`ingest.parse` (each imports its library lazily)."""
