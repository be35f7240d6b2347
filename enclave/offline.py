"""No egress: every switch the dependencies honour is set before they are imported.

Enclave never calls out at run time. The model hubs, unstructured's usage ping and its
spaCy download are all told to stay quiet here, at every entry point.
"""

from __future__ import annotations

import os

_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "true",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    # Ray (ingest --engine ray) reports usage statistics unless told not to
    "RAY_USAGE_STATS_ENABLED": "0",
}


def enforce_offline() -> None:
    """Set the no-egress environment for this process and every child it starts."""
    for key, value in _OFFLINE_ENV.items():
        os.environ[key] = value


def offline_env() -> dict[str, str]:
    """The variables :func:`enforce_offline` sets (for docs and tests)."""
    return dict(_OFFLINE_ENV)
