"""Exact vector search over every chunk in memory, for many queries at once."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from store.records import Candidate


class ExactVectorIndex:
    """Exact cosine search for a batch of queries as one matrix product over every chunk's
    vector. It returns what :meth:`Store.vector_search` would (LanceDB's flat search is exact
    too), without a query per question: the evaluation ranks thousands of questions with it."""

    def __init__(self, rows: list[dict[str, Any]], dimension: int) -> None:
        self.candidates = [Candidate.from_row(r) for r in rows]
        self.matrix = (
            np.asarray([r["vector"] for r in rows], dtype=np.float32)
            if rows
            else np.zeros((0, dimension), dtype=np.float32)
        )

    def __len__(self) -> int:
        return len(self.candidates)

    def search(self, vectors: npt.NDArray[np.float32], limit: int) -> list[list[Candidate]]:
        """The ``limit`` closest chunks for each row of ``vectors``, closest first."""
        out: list[list[Candidate]] = []
        n = self.matrix.shape[0]
        if n == 0:
            return [[] for _ in range(len(vectors))]
        k = min(limit, n)
        for start in range(0, len(vectors), 512):
            sims = vectors[start : start + 512] @ self.matrix.T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n else None
            for row in range(sims.shape[0]):
                cand = top[row] if top is not None else np.arange(n)
                ranked = cand[np.argsort(-sims[row, cand], kind="stable")]
                out.append(
                    [
                        replace(self.candidates[j], similarity=float(sims[row, j]))
                        for j in ranked.tolist()
                    ]
                )
        return out
