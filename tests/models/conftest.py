"""The real bundled generator, loaded once for the whole run (n_ctx 2048, 1 thread).

One thread on purpose: on a machine whose cores are busy with other work, llama.cpp's threads
spin at their barriers and two threads measured 5-20x slower than one (see docs/models.md).
"""

from __future__ import annotations

import pytest

from models.llama_cpp import LlamaCppGenerator


@pytest.fixture(scope="session")
def bundled_generator() -> LlamaCppGenerator:
    from models.bundled import bundled_generator_path

    return LlamaCppGenerator(bundled_generator_path(), n_ctx=2048, n_threads=1, seed=7)
