"""Domain errors: one small hierarchy, mapped once to HTTP statuses and once to exit codes."""

from __future__ import annotations


class EnclaveError(Exception):
    """Base of every error Enclave raises on purpose."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str = "internal_error"
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(EnclaveError):
    """The caller asked for something malformed (bad flag, bad request field)."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"
    exit_code = 2


class ConfigError(UsageError):
    """A setting or a configuration file is invalid."""

    code = "invalid_config"


class NotFoundError(EnclaveError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class EmbedderMismatchError(EnclaveError):
    """The index was built with another embedder; mixing vectors would corrupt search."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "embedder_mismatch"
    exit_code = 2


class PromptTooLongError(UsageError):
    code = "context_length_exceeded"


class QueueFullError(EnclaveError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "queue_full"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitError(EnclaveError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthError(EnclaveError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class ForbiddenError(EnclaveError):
    status_code = 403
    error_type = "permission_error"
    code = "forbidden"


class GenerationTimeoutError(EnclaveError):
    status_code = 504
    error_type = "timeout_error"
    code = "generation_timeout"


class ModelNotAvailableError(EnclaveError):
    status_code = 503
    error_type = "server_error"
    code = "model_unavailable"
