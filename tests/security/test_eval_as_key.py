"""``enclave eval --as-key``: the in-process evaluation sees only what that key may read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from enclave.errors import NotFoundError
from enclave.security.keys import KeyStore
from enclave.settings import Settings
from eval.harness import EvalOptions, run_eval
from tests.eval.conftest import write_documents_dataset


def test_eval_as_key_applies_the_keys_groups(
    tmp_path: Path, data_dir: Path, bundled_embedder: Any
) -> None:
    dataset = write_documents_dataset(tmp_path / "golden")
    settings = Settings(data_dir=data_dir)
    keys = KeyStore(data_dir)
    keys.create("eval-admin", admin=True)
    keys.create("eval-hr", groups=["hr"])

    def recall(as_key: str | None, name: str) -> tuple[float, dict[str, Any]]:
        out = run_eval(
            settings,
            EvalOptions(
                dataset_dir=dataset,
                out_dir=data_dir / name,
                no_answers=True,
                progress=False,
                as_key=as_key,
            ),
            embedder=bundled_embedder,
        )
        metrics = out.report["metrics"]["retrieval"]
        value = next(v for k, v in metrics.items() if k.startswith("recall"))
        return float(value), out.report["index"]

    everything, _ = recall(None, "default")
    admin, info = recall("eval-admin", "admin")
    assert everything > 0 and admin == everything and info["groups"] is None
    # the evaluation index is ingested without groups: a non-admin key reads nothing of it
    hr, info = recall("eval-hr", "hr")
    assert hr == 0.0 and info["groups"] == ["hr", "public"] and info["as_key"] == "eval-hr"
    with pytest.raises(NotFoundError):
        recall("nobody", "nobody")
