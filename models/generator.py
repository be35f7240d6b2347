"""Generators: chat models behind a small streaming interface.

``LlamaCppGenerator`` (``models/llama_cpp.py``) runs any GGUF chat model through llama.cpp, with the
chat template from the model's own metadata; ``FakeGenerator`` is a deterministic stand-in for
tests of pure logic. ``load_generator`` picks one from the settings.

Every generator is used by one generation at a time (the server serialises them); each still
holds a lock so concurrent callers queue instead of corrupting the model state.

Context rule (both generators): a prompt whose tokens plus ``min(max_tokens,
MIN_ANSWER_TOKENS)`` do not fit in ``context_size`` raises :class:`PromptTooLongError`; otherwise
``max_tokens`` is clamped to the room left, and an answer that fills the context ends with
finish_reason ``"length"``. Callers that budget the prompt (the RAG service) keep the answer
reserve themselves.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from enclave.errors import PromptTooLongError, UsageError

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

Message = dict[str, str]

ROLES = frozenset({"system", "user", "assistant"})
#: the smallest answer room a prompt must leave (or max_tokens when smaller)
MIN_ANSWER_TOKENS = 16

#: used only when a GGUF carries no ``tokenizer.chat_template`` (ChatML, the most common)
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class StreamEvent:
    """One piece of a streamed answer; the last event has ``finish_reason`` and ``usage``."""

    delta: str
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass
class GenerationResult:
    text: str
    finish_reason: str
    usage: Usage


class StreamCollector:
    """Gathers a stream of :class:`StreamEvent` into the answer: its text, the finish reason
    and the usage of the last event (the one loop every consumer of a stream shares)."""

    def __init__(self, prompt_tokens: int = 0) -> None:
        self.parts: list[str] = []
        self.finish_reason = "stop"
        self.usage = Usage(prompt_tokens, 0)

    def add(self, event: StreamEvent) -> None:
        if event.delta:
            self.parts.append(event.delta)
        if event.finish_reason is not None:
            self.finish_reason = event.finish_reason
        if event.usage is not None:
            self.usage = event.usage

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def result(self) -> GenerationResult:
        return GenerationResult(text=self.text, finish_reason=self.finish_reason, usage=self.usage)


def check_messages(messages: list[Message]) -> None:
    """Reject what no chat template can render: no messages, unknown roles, non-text content."""
    if not messages:
        raise UsageError("messages must not be empty")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise UsageError(f"messages[{i}] must be an object with 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise UsageError(
                f"messages[{i}].role must be one of system, user, assistant (got {role!r})"
            )
        if not isinstance(message.get("content"), str):
            raise UsageError(f"messages[{i}].content must be a string")


def answer_room(prompt_tokens: int, context_size: int, max_tokens: int) -> int:
    """Tokens the answer may use; raises :class:`PromptTooLongError` when too few are left."""
    if max_tokens < 1:
        raise UsageError("max_tokens must be at least 1")
    reserve = min(max_tokens, MIN_ANSWER_TOKENS)
    if prompt_tokens + reserve > context_size:
        raise PromptTooLongError(
            f"prompt is {prompt_tokens} tokens; the model's context is {context_size} "
            f"with {reserve} reserved for the answer"
        )
    return min(max_tokens, context_size - prompt_tokens)


class _StopMatcher:
    """Cuts the text at the first stop string, holding back any tail that might begin one."""

    def __init__(self, stop: list[str] | None) -> None:
        self.stops = [s for s in (stop or []) if s]
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def feed(self, piece: str) -> str:
        """Add ``piece``; return the text now safe to emit."""
        self.text += piece
        if not self.stops:
            out = self.text[self.emitted :]
            self.emitted = len(self.text)
            return out
        cut = -1
        for s in self.stops:
            at = self.text.find(s, max(0, self.emitted - len(s) + 1))
            if at != -1 and (cut == -1 or at < cut):
                cut = at
        if cut != -1:
            self.stopped = True
            self.text = self.text[:cut]
            out = self.text[self.emitted :]
            self.emitted = len(self.text)
            return out
        hold = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(self.text)), 0, -1):
                if self.text.endswith(s[:n]):
                    hold = max(hold, n)
                    break
        safe = max(self.emitted, len(self.text) - hold)
        out = self.text[self.emitted : safe]
        self.emitted = safe
        return out

    def flush(self) -> str:
        out = self.text[self.emitted :]
        self.emitted = len(self.text)
        return out


class Generator(ABC):
    """A chat model: token counting in its own tokenizer and streamed generation."""

    name: str
    context_size: int

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` alone (no template, no special tokens)."""

    @abstractmethod
    def count_chat_tokens(self, messages: list[Message]) -> int:
        """Tokens the model sees for ``messages``: chat template applied, generation prompt
        added. Equals ``usage.prompt_tokens`` of a generation on the same messages."""

    @abstractmethod
    def stream(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[StreamEvent]:
        """Yield the answer as it is produced. The last event has ``finish_reason``
        (``"stop"``, ``"length"`` or ``"cancelled"``) and ``usage``.

        Raises :class:`PromptTooLongError` (before yielding anything) when the prompt does not
        fit, :class:`UsageError` for malformed messages."""

    def chat(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        cancel: threading.Event | None = None,
    ) -> GenerationResult:
        """The whole answer at once: :meth:`stream` joined."""
        collected = StreamCollector()
        for event in self.stream(
            messages, max_tokens=max_tokens, temperature=temperature, stop=stop, cancel=cancel
        ):
            collected.add(event)
        return collected.result()

    def parameter_count(self) -> int | None:
        """The model's number of parameters, when known (the answer stage's ``auto`` mode
        reads it)."""
        return None

    def end_of_turn_strings(self) -> list[str]:
        """Texts that end the model's turn (its chat template's end-of-turn marker, its end
        token): a generation stops at them even when the model writes one as plain text."""
        return []

    def warmup(self, system_prompt: str) -> None:  # noqa: B027 - optional hook
        """Prepare for prompts that start with ``system_prompt`` (no-op unless overridden)."""

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "context_size": self.context_size,
            "parameters": self.parameter_count(),
        }

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model (no-op unless overridden)."""


# --------------------------------------------------------------------------------------------
# Fake


_WS = re.compile(r"\S+")


class FakeGenerator(Generator):
    """Deterministic generator for tests of pure logic; no model file.

    Tokens are whitespace-separated words. A chat costs the words of every message plus
    ``PER_MESSAGE`` tokens per message and ``GENERATION_PROMPT`` for the answer header. The
    answer is ``"Based on the sources [1]."`` followed by up to eight words of the last user
    message, or ``reply`` when given. ``token_delay_s`` slows each token (cancellation and
    timeout tests). ``parameters``: the size it claims (None: unknown, as a stand-in for a
    large model).
    """

    PER_MESSAGE = 4
    GENERATION_PROMPT = 3

    def __init__(
        self,
        *,
        context_size: int = 4096,
        reply: str | None = None,
        token_delay_s: float = 0.0,
        name: str = "fake",
        parameters: int | None = None,
    ) -> None:
        self.name = name
        self.parameters = parameters
        self.context_size = context_size
        self.reply = reply
        self.token_delay_s = token_delay_s
        self._lock = threading.Lock()
        #: the messages of the most recent generation (for assertions in tests)
        self.last_messages: list[Message] | None = None

    def count_tokens(self, text: str) -> int:
        return len(_WS.findall(text))

    def parameter_count(self) -> int | None:
        return self.parameters

    def count_chat_tokens(self, messages: list[Message]) -> int:
        check_messages(messages)
        words = sum(self.count_tokens(m["content"]) + self.PER_MESSAGE for m in messages)
        return words + self.GENERATION_PROMPT

    def answer_for(self, messages: list[Message]) -> str:
        if self.reply is not None:
            return self.reply
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        words = _WS.findall(last_user)[:8]
        return " ".join(["Based on the sources [1].", *words])

    def stream(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[StreamEvent]:
        prompt_tokens = self.count_chat_tokens(messages)
        room = answer_room(prompt_tokens, self.context_size, max_tokens)
        return self._stream(messages, prompt_tokens, room, stop, cancel)

    def _stream(
        self,
        messages: list[Message],
        prompt_tokens: int,
        room: int,
        stop: list[str] | None,
        cancel: threading.Event | None,
    ) -> Iterator[StreamEvent]:
        with self._lock:
            self.last_messages = [dict(m) for m in messages]
            pieces = re.findall(r"\s*\S+", self.answer_for(messages))
            matcher = _StopMatcher(stop)
            finish = "stop"
            produced = 0
            for piece in pieces:
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                if produced >= room:
                    finish = "length"
                    break
                if self.token_delay_s:
                    time.sleep(self.token_delay_s)
                produced += 1
                out = matcher.feed(piece)
                if out:
                    yield StreamEvent(delta=out)
                if matcher.stopped:
                    break
            tail = "" if matcher.stopped else matcher.flush()
            yield StreamEvent(
                delta=tail, finish_reason=finish, usage=Usage(prompt_tokens, produced)
            )
