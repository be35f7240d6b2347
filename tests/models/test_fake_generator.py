"""FakeGenerator and the context rule shared by every generator (pure logic)."""

from __future__ import annotations

import threading
import time

import pytest

from enclave.errors import PromptTooLongError, UsageError
from models.generator import FakeGenerator, Message, _StopMatcher, answer_room

MESSAGES: list[Message] = [
    {"role": "system", "content": "Answer from the sources."},
    {"role": "user", "content": "What is the refund policy for damaged goods?"},
]


def test_answer_is_deterministic_and_cites() -> None:
    gen = FakeGenerator()
    a = gen.chat(MESSAGES, max_tokens=100)
    assert a == gen.chat(MESSAGES, max_tokens=100)
    assert a.text == "Based on the sources [1]. What is the refund policy for damaged goods?"
    assert a.finish_reason == "stop"
    assert a.usage.completion_tokens == gen.count_tokens(a.text) == 13
    assert a.usage.prompt_tokens == gen.count_chat_tokens(MESSAGES) == 4 + 4 + 8 + 4 + 3
    assert gen.last_messages == MESSAGES


def test_stream_joins_to_chat_and_honours_max_tokens() -> None:
    gen = FakeGenerator(reply="one two three four five six")
    events = list(gen.stream(MESSAGES, max_tokens=4))
    assert [e.delta for e in events[:-1]] == ["one", " two", " three", " four"]
    assert events[-1].finish_reason == "length"
    assert events[-1].usage is not None and events[-1].usage.completion_tokens == 4
    assert gen.chat(MESSAGES, max_tokens=4).text == "one two three four"


def test_stop_strings() -> None:
    gen = FakeGenerator(reply="alpha beta [END] gamma")
    result = gen.chat(MESSAGES, max_tokens=10, stop=["[END]"])
    assert result.text == "alpha beta "
    assert result.finish_reason == "stop"


def test_stop_matcher_holds_back_a_split_stop_string() -> None:
    m = _StopMatcher(["</answer>"])
    assert m.feed("The answer </ans") == "The answer "
    assert m.feed("wer> trailing") == ""
    assert m.stopped and m.text == "The answer "
    m = _StopMatcher(["</answer>"])
    assert m.feed("a </") == "a "
    assert m.feed("b") == "</b"
    assert m.flush() == ""


def test_cancel() -> None:
    gen = FakeGenerator(reply="word " * 200, token_delay_s=0.01)
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    start = time.perf_counter()
    result = gen.chat(MESSAGES, max_tokens=500, cancel=cancel)
    assert time.perf_counter() - start < 1.0
    assert result.finish_reason == "cancelled"
    assert 0 < result.usage.completion_tokens < 200


def test_context_rule() -> None:
    gen = FakeGenerator(context_size=40)
    n = gen.count_chat_tokens(MESSAGES)  # 23
    # fits: the answer is clamped to the room left
    result = FakeGenerator(context_size=40, reply="w " * 100).chat(MESSAGES, max_tokens=500)
    assert result.usage.completion_tokens == 40 - n
    assert result.finish_reason == "length"
    long = [{"role": "user", "content": "x " * 100}]
    with pytest.raises(PromptTooLongError, match="prompt is 107 tokens; the model's context is 40"):
        gen.stream(long, max_tokens=10)
    assert answer_room(10, 40, 500) == 30
    assert answer_room(30, 40, 5) == 5
    with pytest.raises(PromptTooLongError, match="with 16 reserved for the answer"):
        answer_room(30, 40, 500)


def test_bad_messages() -> None:
    gen = FakeGenerator()
    with pytest.raises(UsageError, match="empty"):
        gen.chat([], max_tokens=4)
    with pytest.raises(UsageError, match="role"):
        gen.chat([{"role": "bot", "content": "x"}], max_tokens=4)
    with pytest.raises(UsageError, match="content"):
        gen.chat([{"role": "user"}], max_tokens=4)
    with pytest.raises(UsageError, match="max_tokens"):
        gen.chat(MESSAGES, max_tokens=0)
