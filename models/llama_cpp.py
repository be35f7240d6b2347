"""llama.cpp behind the :class:`~models.generator.Generator` interface: any GGUF chat model,
CPU or GPU offload, through llama-cpp-python.

Everything that touches llama.cpp lives here: loading (with the thread counts and the
weight-repacking choice), the model's own chat template and tokenizer, prefix reuse of the
KV cache, cancellation through llama.cpp's abort callback, and locating a GGUF file.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import functools
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from enclave.errors import ConfigError, PromptTooLongError, UsageError
from models.download import is_gguf
from models.generator import (
    FALLBACK_CHAT_TEMPLATE,
    MIN_ANSWER_TOKENS,
    Generator,
    Message,
    StreamEvent,
    Usage,
    _StopMatcher,
    answer_room,
    check_messages,
)

log = logging.getLogger(__name__)

_ABORT_CB_TYPE = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p)


@functools.cache
def _abort_setter() -> Any:
    """``llama_set_abort_callback`` from the loaded libllama (None if this build lacks it)."""
    from llama_cpp import llama_cpp as lib

    fn = getattr(lib._lib, "llama_set_abort_callback", None)
    if fn is None:
        return None
    fn.argtypes = [ctypes.c_void_p, _ABORT_CB_TYPE, ctypes.c_void_p]
    fn.restype = None
    return fn


class LlamaCppGenerator(Generator):
    """Any GGUF chat model through llama-cpp-python, CPU or GPU offload.

    The prompt is the model's own chat template (GGUF ``tokenizer.chat_template``) rendered with
    the generation prompt and tokenized by the model's tokenizer, so :meth:`count_chat_tokens`
    is exactly what the model evaluates. The KV cache of the previous request is reused for the
    longest shared token prefix (the fixed system prompt of RAG prompts). A cancellation is
    seen between two answer tokens, and while the prompt is evaluated llama.cpp's abort
    callback interrupts it at once.
    """

    repeat_penalty = 1.1
    top_k = 40
    top_p = 0.95
    min_p = 0.05

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int = 4096,
        n_threads: int = 0,
        n_gpu_layers: int = 0,
        n_batch: int = 512,
        seed: int = 0,
        weight_repack: str = "auto",
    ) -> None:
        import llama_cpp
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.path = Path(path)
        threads = n_threads if n_threads > 0 else auto_threads()
        # prompt evaluation is large matrix work that loses little to a busy core: all of them
        batch_threads = n_threads if n_threads > 0 else (os.cpu_count() or 1)
        self.weight_repack = weight_repack == "on" or (
            weight_repack == "auto" and not cpu_has_amx()
        )
        try:
            with _model_params(use_extra_bufts=self.weight_repack):
                self._llm = Llama(
                    model_path=str(self.path),
                    n_ctx=n_ctx,
                    n_threads=threads,
                    n_threads_batch=batch_threads,
                    n_gpu_layers=n_gpu_layers,
                    n_batch=min(n_batch, n_ctx),
                    seed=seed,
                    verbose=False,
                )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot load the GGUF model {self.path}: {exc}") from exc
        llm = self._llm
        self.seed = seed
        self.n_threads = threads
        self.n_threads_batch = batch_threads
        self.n_gpu_layers = n_gpu_layers
        self.gpu_offload_supported = bool(llama_cpp.llama_supports_gpu_offload())
        # llama.cpp offloads the repeating layers plus the output layer
        total_layers = int(llama_cpp.llama_model_n_layer(llm._model.model)) + 1
        wanted = total_layers if n_gpu_layers < 0 else min(n_gpu_layers, total_layers)
        self.gpu_layers = (total_layers, wanted if self.gpu_offload_supported else 0)
        if n_gpu_layers != 0 and not self.gpu_offload_supported:
            log.warning(
                "n_gpu_layers=%d is ignored: this llama-cpp-python build has no GPU backend, "
                "so %s runs on the CPU (reinstall it with CMAKE_ARGS=-DGGML_CUDA=on, "
                "see docs/models.md)",
                n_gpu_layers,
                self.path.name,
            )
        self.context_size = int(llm.n_ctx())
        self.name = self.path.name.removesuffix(".gguf")
        self.metadata: dict[str, str] = dict(llm.metadata)
        template = self.metadata.get("tokenizer.chat_template")
        self.template_source = "gguf" if template else "chatml-fallback"
        if not template:
            log.warning("%s has no chat template; using ChatML", self.path.name)
        eos_id, bos_id = llm.token_eos(), llm.token_bos()
        model = llm._model
        self._eos_text = model.token_get_text(eos_id) if eos_id != -1 else ""
        self._bos_text = model.token_get_text(bos_id) if bos_id != -1 else ""
        self._add_bos = bool(model.add_bos_token()) and bos_id != -1
        # one formatter per setting of the generation prompt: rendering never mutates state
        self._formatters = {
            flag: Jinja2ChatFormatter(
                template=template or FALLBACK_CHAT_TEMPLATE,
                eos_token=self._eos_text,
                bos_token=self._bos_text,
                add_generation_prompt=flag,
            )
            for flag in (True, False)
        }
        self._parameters = int(llama_cpp.llama_model_n_params(model.model))
        self._end_strings = end_of_turn_strings(self, self.metadata)
        self._lock = threading.Lock()
        self._abort_event: threading.Event | None = None
        self._closed = False

        def _should_abort(_data: Any) -> bool:
            event = self._abort_event
            return event is not None and event.is_set()

        # kept on the instance: llama.cpp holds a raw pointer to it while installed
        self._abort_cb = _ABORT_CB_TYPE(_should_abort)

    # -- prompt -------------------------------------------------------------------------------

    def render(self, messages: list[Message], *, add_generation_prompt: bool = True) -> str:
        """The prompt text the chat template makes of ``messages``."""
        check_messages(messages)
        try:
            formatter = self._formatters[add_generation_prompt]
            return formatter(messages=messages).prompt  # type: ignore[arg-type]
        except Exception as exc:  # jinja2 errors and the template's raise_exception
            raise UsageError(f"the model's chat template rejected the messages: {exc}") from exc

    def _tokenize_prompt(self, prompt: str) -> list[int]:
        add_bos = self._add_bos and not (self._bos_text and prompt.startswith(self._bos_text))
        return list(self._llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True))

    def prompt_tokens(self, messages: list[Message]) -> list[int]:
        return self._tokenize_prompt(self.render(messages))

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def parameter_count(self) -> int | None:
        return self._parameters

    def end_of_turn_strings(self) -> list[str]:
        return list(self._end_strings)

    def count_chat_tokens(self, messages: list[Message]) -> int:
        return len(self.prompt_tokens(messages))

    # -- generation ---------------------------------------------------------------------------

    def stream(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[StreamEvent]:
        tokens = self.prompt_tokens(messages)
        room = answer_room(len(tokens), self.context_size, max_tokens)
        stops = list(dict.fromkeys([*(stop or []), *self._end_strings]))
        return self._stream(tokens, room, temperature, stops, cancel)

    def _prefill(self, tokens: list[int], cancel: threading.Event | None) -> bool:
        """Evaluate all but the last prompt token, reusing the cached prefix. While it runs,
        llama.cpp polls ``cancel`` between graph nodes, so a cancellation interrupts even a
        long prompt at once. Returns False when cancelled."""
        llm = self._llm
        if getattr(llm, "_is_recurrent", False) or getattr(llm, "_is_hybrid", False):
            return True  # no partial cache removal: let llama-cpp-python handle it
        cached = llm.input_ids[: llm.n_tokens]
        common = 0
        for a, b in zip(cached, tokens, strict=False):
            if a != b:
                break
            common += 1
        target = len(tokens) - 1  # the last token is evaluated by generate() for its logits
        common = min(common, target)
        llm.n_tokens = common  # eval() drops the KV cache past n_tokens
        if common >= target:
            return not (cancel is not None and cancel.is_set())
        self._abort_event = cancel
        self._set_abort(cancel is not None)
        try:
            for pos in range(common, target, llm.n_batch):
                if cancel is not None and cancel.is_set():
                    return False
                try:
                    llm.eval(tokens[pos : min(target, pos + llm.n_batch)])
                except RuntimeError:
                    # llama_decode returns 2 when aborted; the cache stays valid up to n_tokens
                    if cancel is not None and cancel.is_set():
                        return False
                    raise
        finally:
            self._set_abort(False)
            self._abort_event = None
        return not (cancel is not None and cancel.is_set())

    def _set_abort(self, on: bool) -> None:
        """Install (or remove) the llama.cpp abort callback that reads ``_abort_event``.
        Only during the prompt: during decoding the event is checked between tokens."""
        setter = _abort_setter()
        if setter is None:
            return
        setter(self._llm._ctx.ctx, self._abort_cb if on else _ABORT_CB_TYPE(0), None)

    def _stream(
        self,
        tokens: list[int],
        room: int,
        temperature: float,
        stop: list[str] | None,
        cancel: threading.Event | None,
    ) -> Iterator[StreamEvent]:
        import llama_cpp

        with self._lock:
            llm = self._llm
            vocab = llm._model.vocab
            usage = Usage(prompt_tokens=len(tokens), completion_tokens=0)
            matcher = _StopMatcher(stop)
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            finish = "length"
            try:
                if not self._prefill(tokens, cancel):
                    yield StreamEvent(delta="", finish_reason="cancelled", usage=usage)
                    return
                llm.set_seed(self.seed)
                gen = llm.generate(
                    tokens,
                    top_k=self.top_k,
                    top_p=self.top_p,
                    min_p=self.min_p,
                    temp=temperature,
                    repeat_penalty=self.repeat_penalty,
                )
                try:
                    for token in gen:
                        if llama_cpp.llama_vocab_is_eog(vocab, token):
                            finish = "stop"
                            break
                        usage.completion_tokens += 1
                        text = decoder.decode(llm.detokenize([token]))
                        out = matcher.feed(text) if text else ""
                        if out:
                            yield StreamEvent(delta=out)
                        if matcher.stopped:
                            finish = "stop"
                            break
                        if usage.completion_tokens >= room:
                            finish = "length"
                            break
                        if cancel is not None and cancel.is_set():
                            finish = "cancelled"
                            break
                finally:
                    gen.close()
            except (ValueError, RuntimeError) as exc:
                llm.reset()  # type: ignore[no-untyped-call]
                if "context" in str(exc):
                    raise PromptTooLongError(
                        f"prompt is {len(tokens)} tokens; the model's context is "
                        f"{self.context_size} with {room} reserved for the answer ({exc})"
                    ) from exc
                raise
            tail = ""
            if not matcher.stopped:
                tail = matcher.feed(decoder.decode(b"", final=True)) + matcher.flush()
            yield StreamEvent(delta=tail, finish_reason=finish, usage=usage)

    def warmup(self, system_prompt: str) -> None:
        """Evaluate the chat-template prefix of ``system_prompt`` so the next request that
        starts with it only evaluates the rest."""
        prefix = self.render(
            [{"role": "system", "content": system_prompt}], add_generation_prompt=False
        )
        tokens = self._tokenize_prompt(prefix)
        if len(tokens) + MIN_ANSWER_TOKENS >= self.context_size:
            return
        with self._lock:
            # prefill evaluates all but the last token: add one so the whole prefix is cached
            self._prefill([*tokens, tokens[-1]], None)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "context_size": self.context_size,
            "n_threads": self.n_threads,
            "n_threads_batch": self.n_threads_batch,
            "n_gpu_layers": self.n_gpu_layers,
            "gpu_offload_supported": self.gpu_offload_supported,
            "layers_on_gpu": f"{self.gpu_layers[1]}/{self.gpu_layers[0]}",
            "chat_template": self.template_source,
            "weight_repack": self.weight_repack,
            "architecture": self.metadata.get("general.architecture"),
            "parameters": self._parameters,
            "size_label": self.metadata.get("general.size_label"),
            "end_of_turn": self._end_strings,
        }

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._set_abort(False)
            self._llm.close()


_TURN_MARK = "\u2063ENCLAVE-TURN-END\u2063"


def end_of_turn_strings(generator: LlamaCppGenerator, metadata: dict[str, str]) -> list[str]:
    """What ends an assistant turn for this model, from its GGUF metadata: the text its chat
    template writes right after an assistant message (``<|im_end|>``, ``<|eot_id|>``,
    ``<end_of_turn>``, ``</s>``...), and the texts of its end-of-sequence and end-of-turn
    tokens. llama.cpp already stops at tokens it marks end-of-generation; these catch a model
    that spells the marker out as plain text."""
    found: list[str] = []
    try:
        rendered = generator.render(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": _TURN_MARK}],
            add_generation_prompt=False,
        )
    except Exception:  # a template that refuses this shape: the tokens below still count
        rendered = ""
    if _TURN_MARK in rendered:
        after = rendered.split(_TURN_MARK, 1)[1].split("\n", 1)[0].strip()
        if after:
            found.append(after)
    model = generator._llm._model
    for key in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"):
        value = metadata.get(key)
        if value is None or not str(value).isdigit():
            continue
        text = model.token_get_text(int(value))
        if text and len(text) > 1 and not text.isspace():
            found.append(text)
    return list(dict.fromkeys(found))


@functools.cache
def cpu_has_amx() -> bool:
    """Whether the CPU has AMX (Intel Sapphire Rapids and later). llama.cpp moves weights into
    AMX buffers there (an "extra buffer type"), and its AMX matrix kernel crashes with a
    segmentation fault on the first prompt on some of these machines (ggml-org/llama.cpp
    #20824; seen on Enclave's build machines with the bundled Q4_1 model)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_int8" in line.split()
    except OSError:
        pass
    return False


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def _model_params(*, use_extra_bufts: bool) -> Iterator[None]:
    """Load models with ``use_extra_bufts`` set as asked: llama-cpp-python's ``Llama`` takes
    its model parameters from ``llama_model_default_params()`` and exposes no argument for it,
    so the defaults are adjusted while one model loads."""
    if use_extra_bufts:
        yield
        return
    from llama_cpp import llama_cpp as lib

    with _PARAMS_LOCK:
        original = lib.llama_model_default_params

        def defaults() -> Any:
            params = original()
            if hasattr(params, "use_extra_bufts"):
                params.use_extra_bufts = False
            return params

        lib.llama_model_default_params = defaults
        try:
            yield
        finally:
            lib.llama_model_default_params = original


def auto_threads() -> int:
    """llama.cpp decode threads for ``n_threads = 0``: every core but one, so the server's
    event loop, retrieval and embedding keep a core. llama.cpp's threads spin at a barrier after
    every step; one that loses its core stalls the rest. Measured on 2 cores, streaming through
    the server: 34-39 tok/s with 1 thread against 31-33 tok/s with 2 (docs/models.md). Prompt
    evaluation keeps every core (``n_threads_batch``)."""
    return max(1, (os.cpu_count() or 1) - 1)


def resolve_generator_path(model: str) -> Path:
    """The GGUF file ``model`` names ('bundled' or a path), checked to be a GGUF."""
    if model == "bundled":
        from models.bundled import bundled_generator_path

        return bundled_generator_path()
    path = Path(model).expanduser()
    if not path.exists():
        raise ConfigError(f"generator model not found: {path} (ENCLAVE_GENERATOR__MODEL)")
    if not path.is_file():
        raise ConfigError(f"generator model is not a file: {path} (expected a .gguf file)")
    if not is_gguf(path):
        raise ConfigError(
            f"generator model is not a GGUF file: {path} (llama.cpp needs a .gguf model; "
            "convert it with llama.cpp's convert_hf_to_gguf.py or pick a GGUF release)"
        )
    return path
