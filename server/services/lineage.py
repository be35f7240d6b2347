"""Lineage of an answer, for ``GET /v1/lineage/{response_id}`` (enclave/security/lineage.py):
the passages and file versions it stood on, read from the release it was served from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from enclave.settings import Settings
    from store.live import LiveIndex


class LineageService:
    def __init__(self, settings: Settings, index: LiveIndex) -> None:
        self.settings = settings
        self.index = index

    def resolve(self, response_id: str) -> dict[str, Any]:
        """404 for an unknown response id, 410 once its release is no longer retained."""
        from enclave.security.lineage import lineage

        return lineage(
            self.settings.data_dir,
            self.index.location,
            response_id,
            connection=self.index.connection,
        )
