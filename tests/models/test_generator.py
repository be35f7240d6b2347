"""The llama.cpp generator on the real bundled SmolLM2-135M-Instruct GGUF."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from enclave.errors import ConfigError, PromptTooLongError, UsageError
from enclave.settings import GeneratorSettings
from models.generator import FakeGenerator, Message, StreamEvent
from models.llama_cpp import LlamaCppGenerator
from models.loading import load_generator

QUESTION: list[Message] = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
ESSAY: list[Message] = [
    {"role": "user", "content": "Write a long essay about the history of the Roman empire."}
]


def test_chat_returns_text_and_exact_usage(bundled_generator: LlamaCppGenerator) -> None:
    result = bundled_generator.chat(QUESTION, max_tokens=32)
    assert result.text.strip()
    assert "Paris" in result.text
    assert result.finish_reason == "stop"
    assert 1 <= result.usage.completion_tokens <= 32
    assert result.usage.prompt_tokens == bundled_generator.count_chat_tokens(QUESTION)


def test_prompt_count_matches_llama_cpp_python_chat_path(
    bundled_generator: LlamaCppGenerator,
) -> None:
    """The template comes from the GGUF: llama-cpp-python's own chat completion agrees."""
    assert bundled_generator.template_source == "gguf"
    llm = bundled_generator._llm
    with bundled_generator._lock:
        reference = llm.create_chat_completion(messages=QUESTION, max_tokens=1)  # type: ignore[arg-type]
    assert reference["usage"]["prompt_tokens"] == bundled_generator.count_chat_tokens(QUESTION)  # type: ignore[index]
    prompt = bundled_generator.render(QUESTION)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "What is the capital of France?" in prompt


def test_stream_deltas_join_to_the_chat_text(bundled_generator: LlamaCppGenerator) -> None:
    chat = bundled_generator.chat(ESSAY, max_tokens=24)
    events = list(bundled_generator.stream(ESSAY, max_tokens=24))
    deltas = [e.delta for e in events if e.delta]
    assert len(deltas) >= 5
    assert "".join(e.delta for e in events) == chat.text
    assert all(e.finish_reason is None for e in events[:-1])
    assert events[-1].finish_reason == chat.finish_reason
    assert events[-1].usage == chat.usage


def test_seeded_sampling_is_reproducible(bundled_generator: LlamaCppGenerator) -> None:
    a = bundled_generator.chat(ESSAY, max_tokens=16, temperature=0.9)
    b = bundled_generator.chat(ESSAY, max_tokens=16, temperature=0.9)
    assert a.text == b.text and a.text.strip()


def test_max_tokens_is_respected(bundled_generator: LlamaCppGenerator) -> None:
    result = bundled_generator.chat(ESSAY, max_tokens=5)
    assert result.usage.completion_tokens == 5
    assert result.finish_reason == "length"
    assert bundled_generator.count_tokens(result.text) <= 6


def test_stop_string_cuts_the_answer(bundled_generator: LlamaCppGenerator) -> None:
    full = bundled_generator.chat(ESSAY, max_tokens=24).text
    words = full.split()
    assert len(words) >= 4
    stop = " " + words[3]
    cut = bundled_generator.chat(ESSAY, max_tokens=24, stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.text == full[: full.index(stop)]
    assert stop not in cut.text


def test_cancel_stops_within_a_second(bundled_generator: LlamaCppGenerator) -> None:
    cancel = threading.Event()
    set_at: list[float] = []

    def cancel_now() -> None:
        set_at.append(time.perf_counter())
        cancel.set()

    events: list[StreamEvent] = []
    for event in bundled_generator.stream(ESSAY, max_tokens=400, cancel=cancel):
        events.append(event)
        if event.delta and not set_at:
            threading.Thread(target=cancel_now).start()
    ended = time.perf_counter()
    assert set_at
    assert ended - set_at[0] < 1.0
    last = events[-1]
    assert last.finish_reason == "cancelled"
    assert last.usage is not None and 1 <= last.usage.completion_tokens < 100


def test_cancel_during_a_long_prompt(bundled_generator: LlamaCppGenerator) -> None:
    """The prompt is evaluated in slices, so a cancellation does not wait for all of it."""
    long_prompt: list[Message] = [
        {"role": "user", "content": "Summarise the minutes of the meeting. " * 200}
    ]
    cancel = threading.Event()
    timer = threading.Timer(0.2, cancel.set)
    start = time.perf_counter()
    timer.start()
    events = list(bundled_generator.stream(long_prompt, max_tokens=50, cancel=cancel))
    elapsed = time.perf_counter() - start
    assert events[-1].finish_reason == "cancelled"
    assert events[-1].usage is not None and events[-1].usage.completion_tokens == 0
    assert elapsed < 2.5


def test_too_long_prompt_is_a_clear_error(bundled_generator: LlamaCppGenerator) -> None:
    messages: list[Message] = [{"role": "user", "content": "budget report " * 1500}]
    n = bundled_generator.count_chat_tokens(messages)
    assert n > 2048
    with pytest.raises(PromptTooLongError) as info:
        bundled_generator.stream(messages, max_tokens=64)
    assert f"prompt is {n} tokens" in info.value.message
    assert "context is 2048" in info.value.message
    assert info.value.status_code == 400


def test_malformed_messages_are_usage_errors(bundled_generator: LlamaCppGenerator) -> None:
    with pytest.raises(UsageError):
        bundled_generator.count_chat_tokens([])
    with pytest.raises(UsageError, match="role"):
        bundled_generator.stream([{"role": "tool", "content": "x"}], max_tokens=4)
    with pytest.raises(UsageError):
        bundled_generator.chat(QUESTION, max_tokens=0)


def test_shared_prefix_is_reused(bundled_generator: LlamaCppGenerator) -> None:
    """The second prompt with the same long system prompt only evaluates its new tokens."""
    system = "You answer questions about the company handbook and cite sources. " * 30

    def first_token_s(question: str, sys_prompt: str = system) -> float:
        messages: list[Message] = [
            {"role": "system", "content": sys_prompt},
            {"role": "user", "content": question},
        ]
        start = time.perf_counter()
        stream = bundled_generator.stream(messages, max_tokens=2)
        next(stream)
        elapsed = time.perf_counter() - start
        for _ in stream:
            pass
        return elapsed

    assert bundled_generator.count_chat_tokens([{"role": "system", "content": system}]) > 300
    cold = first_token_s("How many days of leave do new employees get?")
    warm = first_token_s("Who approves travel expenses?")
    assert warm < 0.5 * cold, (cold, warm)

    other = system.replace("handbook", "manual")
    bundled_generator.warmup(other)
    warmed = first_token_s("Who approves travel expenses?", other)
    assert warmed < 0.5 * cold, (cold, warmed)


def test_load_generator(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    fake = load_generator(GeneratorSettings(model="fake", n_ctx=1024))
    assert isinstance(fake, FakeGenerator) and fake.context_size == 1024

    with pytest.raises(ConfigError, match="not found"):
        load_generator(GeneratorSettings(model=str(tmp_path / "missing.gguf")))
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(ConfigError, match="not a GGUF"):
        load_generator(GeneratorSettings(model=str(not_gguf)))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(ConfigError, match="cannot load"):
        load_generator(GeneratorSettings(model=str(broken)))

    capfd.readouterr()
    gen = load_generator(GeneratorSettings(model="bundled", n_ctx=512, n_threads=0))
    assert isinstance(gen, LlamaCppGenerator)
    cores = os.cpu_count() or 1  # 0: every core but one to decode, every core for prompts
    assert gen.context_size == 512 and gen.n_threads == max(1, cores - 1)
    assert gen.n_threads_batch == cores
    gen.close()
    gen = load_generator(GeneratorSettings(model="bundled", n_ctx=512, n_threads=1))
    try:
        assert gen.chat(QUESTION, max_tokens=4).usage.completion_tokens >= 1
        captured = capfd.readouterr()
        assert captured.out == ""  # llama.cpp stays quiet
    finally:
        gen.close()


def test_gpu_setting_on_a_cpu_build_warns_and_reports_the_cpu(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import llama_cpp

    from models.bundled import bundled_generator_path

    with caplog.at_level("WARNING", logger="models.llama_cpp"):
        gen = LlamaCppGenerator(bundled_generator_path(), n_ctx=256, n_threads=1, n_gpu_layers=-1)
    try:
        info = gen.describe()
        total = llama_cpp.llama_model_n_layer(gen._llm._model.model) + 1
        if llama_cpp.llama_supports_gpu_offload():  # a CUDA/Metal build: every layer offloaded
            assert info["layers_on_gpu"] == f"{total}/{total}"
            assert not caplog.records
        else:  # the CPU build: the setting cannot take effect, and the user is told so
            assert info["gpu_offload_supported"] is False
            assert info["layers_on_gpu"] == f"0/{total}"
            assert "n_gpu_layers=-1 is ignored" in caplog.text
            assert "GGML_CUDA=on" in caplog.text
    finally:
        gen.close()


def test_weight_repack_is_off_on_amx_cpus_and_answers() -> None:
    """llama.cpp's AMX kernel crashes on the first prompt on some AMX machines: "auto" turns
    weight repacking off there, "on" and "off" are obeyed, and the model still answers."""
    from models.bundled import bundled_generator_path
    from models.llama_cpp import cpu_has_amx

    path = bundled_generator_path()
    auto = LlamaCppGenerator(path, n_ctx=256, n_threads=1)
    try:
        assert auto.describe()["weight_repack"] is (not cpu_has_amx())
        result = auto.chat(QUESTION, max_tokens=8)
        assert result.usage.completion_tokens > 0
    finally:
        auto.close()
    off = LlamaCppGenerator(path, n_ctx=256, n_threads=1, weight_repack="off")
    try:
        assert off.describe()["weight_repack"] is False
        assert off.chat(QUESTION, max_tokens=4).usage.completion_tokens > 0
    finally:
        off.close()
