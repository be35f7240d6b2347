"""The one rule for an answer's max_tokens, and the prompt cap admission applies."""

from __future__ import annotations

import pytest

from enclave.errors import PromptTooLongError, UsageError
from enclave.settings import SecuritySettings, load_settings
from rag.budget import answer_tokens
from server.services.admission import check_prompt_tokens


def test_answer_tokens_takes_the_smallest_cap() -> None:
    settings = load_settings(
        overrides={
            "generator": {"max_tokens": 300},
            "security": {"max_completion_tokens": 50},
            "server": {"answer_reserve_tokens": 384},
        }
    )
    assert answer_tokens(None, settings, 4096) == 50
    assert answer_tokens(10, settings, 4096) == 10
    assert answer_tokens(10_000, settings, 4096) == 50
    with pytest.raises(UsageError):
        answer_tokens(0, settings, 4096)


def test_default_answer_room_is_at_most_a_quarter_of_the_context() -> None:
    settings = load_settings(overrides={"server": {"answer_reserve_tokens": 384}})
    assert answer_tokens(None, settings, 400) == 100
    assert answer_tokens(None, settings, 32) == 16  # never under 16
    assert answer_tokens(None, settings, None) == 384
    # an explicit request is not limited by the quarter rule, only by the caps
    assert answer_tokens(300, settings, 400) == 300


def test_prompt_cap() -> None:
    sec = SecuritySettings(max_prompt_tokens=100)
    check_prompt_tokens(100, sec)
    with pytest.raises(PromptTooLongError, match="at most 100"):
        check_prompt_tokens(101, sec)
