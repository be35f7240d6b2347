"""Request bodies of the HTTP API (OpenAI-compatible where OpenAI has the endpoint).

The models say everything about a request's shape that the server checks, so that the
OpenAPI schema built from them is true: a request it admits is not refused for its shape.
What no JSON schema can say (the question is the last message, the user's; token limits
counted with the models' tokenizers) is in the field descriptions.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from store.records import SearchFilters

#: a string without NUL characters, as a JSON schema pattern
NO_NUL = r"^[^\x00]*$"


def _clean(value: str) -> str:
    """Lone surrogates (legal in JSON, not in UTF-8) become U+FFFD; NUL is refused."""
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


Text = Annotated[str, AfterValidator(_clean), Field(json_schema_extra={"pattern": NO_NUL})]
NonEmptyText = Annotated[
    str, Field(min_length=1), AfterValidator(_clean), Field(json_schema_extra={"pattern": NO_NUL})
]
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
    """A part of a message's content: only text parts are supported."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: Text


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="tool and function messages are not supported (no tool calling)"
    )
    content: Text | list[TextPart] | None = Field(
        default=None, description="a string or a list of text parts"
    )
    name: Text | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = None


class ResponseFormat(BaseModel):
    """Only the text response format is supported."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text"] = "text"


class ChatCompletionRequest(BaseModel):
    """OpenAI chat completions. Harmless OpenAI fields are accepted and ignored; unsupported
    ones are refused by the schema itself: ``n`` above 1, ``tools``, ``functions``,
    ``logprobs``, response formats other than text, tool and function messages, parts other
    than text."""

    model_config = ConfigDict(extra="allow")

    model: Text = Field(default="enclave", max_length=256)
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=1000,
        description="the conversation; the last message must be the user's question, not "
        "blank (else 400), and the messages together at most security.max_prompt_tokens "
        "tokens (else 400 context_length_exceeded)",
    )
    stream: bool = False
    max_tokens: int | None = Field(
        default=None, ge=1, description="clamped to generator.max_tokens; default: the server's"
    )
    max_completion_tokens: int | None = Field(default=None, ge=1, description="same as max_tokens")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0, description="ignored")
    n: int | None = Field(default=None, ge=1, le=1, description="only one answer per request")
    stop: Text | Annotated[list[Text], Field(max_length=4)] | None = Field(
        default=None, description="a string or up to 4 strings"
    )
    presence_penalty: float | None = Field(default=None, description="ignored")
    frequency_penalty: float | None = Field(default=None, description="ignored")
    seed: int | None = Field(default=None, description="ignored")
    user: Text | None = Field(default=None, description="ignored")
    stream_options: StreamOptions | None = None
    logprobs: Literal[False] | None = Field(default=None, description="not supported")
    tools: list[Any] | None = Field(
        default=None, max_length=0, description="tool calling is not supported"
    )
    functions: list[Any] | None = Field(
        default=None, max_length=0, description="function calling is not supported"
    )
    response_format: ResponseFormat | None = None
    enclave: EnclaveOptions | None = None
    top_k: int | None = Field(default=None, ge=1, le=100, description="same as enclave.top_k")
    filters: Filters | None = Field(default=None, description="same as enclave.filters")

    def plain_messages(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for message in self.messages:
            role = "system" if message.role == "developer" else message.role
            out.append({"role": role, "content": message.text()})
        return out

    def stop_list(self) -> list[str] | None:
        if self.stop is None:
            return None
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop)
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

    input: NonEmptyText | Annotated[list[NonEmptyText], Field(min_length=1, max_length=2048)] = (
        Field(
            description="a string or a list of up to 2,048 strings, none empty; each at most "
            "the embedder's max_tokens tokens (GET /v1/models; else 400)"
        )
    )
    model: Text = Field(default="enclave", max_length=256)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(
        default=None, ge=1, description="only the embedder's dimension (GET /v1/models)"
    )
    user: Text | None = None


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: Text = Field(min_length=1, max_length=20000)
    top_k: int | None = Field(default=None, ge=1, le=100)
    filters: Filters | None = None
