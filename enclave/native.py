"""Load order of native libraries.

llama.cpp built with CUDA (``CMAKE_ARGS=-DGGML_CUDA=on``) can crash with SIGSEGV while it
loads a model's tokenizer when NumPy 2 was imported into the process first: seen on an H100
machine with NumPy 2.5 and llama-cpp-python 0.3.36 (the CPU build was not affected; the
llama-cpp-python tracker has the same report for pandas and NumPy 2). Importing ``llama_cpp``
before anything that loads NumPy (torch, LanceDB, the embedder) avoids it, so every command
that runs the generator calls :func:`preload_generator_runtime` first.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys

log = logging.getLogger(__name__)


def preload_generator_runtime() -> None:
    """Import llama-cpp-python before NumPy; a no-op when it is missing or already loaded."""
    if "llama_cpp" in sys.modules:
        return
    if "numpy" in sys.modules:
        log.debug("numpy was imported before llama_cpp; a CUDA build may crash on model load")
    with contextlib.suppress(ImportError):
        importlib.import_module("llama_cpp")
