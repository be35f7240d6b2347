"""Offline evaluation harness: BEIR-layout datasets, retrieval and answer metrics, reports and
the quality gate behind ``enclave eval``."""
