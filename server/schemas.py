"""Request bodies of the HTTP API (OpenAI-compatible where OpenAI has the endpoint)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from enclave.errors import UsageError
from server.errors import BadParameterError
from store.records import SearchFilters


def _clean(value: str) -> str:
    """Lone surrogates (legal in JSON, not in UTF-8) become U+FFFD; NUL is refused."""
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


Text = Annotated[str, AfterValidator(_clean)]
DocId = Annotated[str, Field(pattern=r"^[0-9a-f]{8,64}$", max_length=64)]


class Filters(BaseModel):
    """Restrict retrieval to part of the index (applied before ranking)."""

    model_config = ConfigDict(extra="forbid")

    path_prefix: Text | None = Field(
        default=None, max_length=4096, description="only files whose path starts with this"
    )
    doc_ids: list[DocId] | None = Field(
        default=None, max_length=1000, description="only these documents"
    )

    def to_store(self) -> SearchFilters:
        return SearchFilters(path_prefix=self.path_prefix or None, doc_ids=self.doc_ids)


class EnclaveOptions(BaseModel):
    """Enclave's own per-request options for chat completions."""

    model_config = ConfigDict(extra="forbid")

    top_k: int | None = Field(default=None, ge=1, le=100, description="sources to retrieve")
    filters: Filters | None = None


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: Text | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Text | list[TextPart] | None = None
    name: Text | None = None

    def text(self, index: int) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts: list[str] = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise UsageError(
                    f"messages[{index}].content: only text parts are supported "
                    f"(got type {part.type[:40]!r})"
                )
            parts.append(part.text)
        return "\n".join(parts)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None


class ChatCompletionRequest(BaseModel):
    """OpenAI chat completions. Harmless OpenAI fields are accepted and ignored; unsupported
    ones (n > 1, tools, functions, logprobs, non-text response formats) are refused."""

    model_config = ConfigDict(extra="allow")

    model: Text = Field(default="enclave", max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1)
    stop: Text | list[Text] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    user: Text | None = None
    stream_options: StreamOptions | None = None
    logprobs: bool | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None
    enclave: EnclaveOptions | None = None
    top_k: int | None = Field(default=None, ge=1, le=100, description="same as enclave.top_k")
    filters: Filters | None = Field(default=None, description="same as enclave.filters")

    def check_supported(self) -> None:
        if self.n not in (None, 1):
            raise _param_error("n", "only n=1 is supported")
        if self.tools:
            raise _param_error("tools", "tool calling is not supported")
        if self.functions:
            raise _param_error("functions", "function calling is not supported")
        if self.logprobs:
            raise _param_error("logprobs", "logprobs are not supported")
        if self.response_format is not None and self.response_format.get("type") not in (
            None,
            "text",
        ):
            raise _param_error("response_format", "only the text response format is supported")
        for i, message in enumerate(self.messages):
            if message.role in ("tool", "function"):
                raise _param_error(
                    "messages", f"messages[{i}]: role {message.role!r} is not supported"
                )

    def plain_messages(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for i, message in enumerate(self.messages):
            role = "system" if message.role == "developer" else message.role
            out.append({"role": role, "content": message.text(i)})
        return out

    def stop_list(self) -> list[str] | None:
        if self.stop is None:
            return None
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        if len(stops) > 4:
            raise _param_error("stop", "at most 4 stop sequences")
        return [s for s in stops if s] or None

    def requested_max_tokens(self) -> int | None:
        return (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else self.max_tokens
        )

    def retrieval_options(self) -> tuple[int | None, SearchFilters | None]:
        opts = self.enclave or EnclaveOptions()
        top_k = opts.top_k if opts.top_k is not None else self.top_k
        filters = opts.filters if opts.filters is not None else self.filters
        return top_k, None if filters is None else filters.to_store()


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    input: Text | list[Text] = Field(description="a string or a list of strings")
    model: Text = Field(default="enclave", max_length=256)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: Text | None = None


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Text = Field(min_length=1, max_length=20000)
    top_k: int | None = Field(default=None, ge=1, le=100)
    filters: Filters | None = None


def _param_error(param: str, message: str) -> BadParameterError:
    return BadParameterError(message, param=param)
