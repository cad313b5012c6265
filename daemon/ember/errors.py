"""Errors that carry their JSON-RPC code. The client sees `message` (and `data`); the log sees more."""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
REQUEST_CANCELLED = -32800
MODEL_LOAD_ERROR = -32001
INPUT_TOO_LONG = -32002
BUSY = -32003
SHUTTING_DOWN = -32004
TASK_UNAVAILABLE = -32005


class EmberError(Exception):
    code = INTERNAL_ERROR

    def __init__(self, message: str, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.data = data

    def to_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ParseError(EmberError):
    code = PARSE_ERROR


class InvalidRequest(EmberError):
    code = INVALID_REQUEST


class MethodNotFound(EmberError):
    code = METHOD_NOT_FOUND


class InvalidParams(EmberError):
    code = INVALID_PARAMS


class InternalError(EmberError):
    code = INTERNAL_ERROR


class RequestCancelled(EmberError):
    code = REQUEST_CANCELLED


class ModelLoadError(EmberError):
    code = MODEL_LOAD_ERROR


class InputTooLong(EmberError):
    code = INPUT_TOO_LONG

    def __init__(self, tokens: int, limit: int, what: str = "input"):
        super().__init__(
            f"{what} is {tokens} tokens; the model takes at most {limit}",
            {"tokens": tokens, "limit": limit},
        )


class Busy(EmberError):
    code = BUSY


class ShuttingDown(EmberError):
    code = SHUTTING_DOWN


class TaskUnavailable(EmberError):
    code = TASK_UNAVAILABLE


class RemoteUnavailable(ModelLoadError):
    """A remote model's server is down, slow, refuses our token, or does not serve the model.

    `data` names the endpoint (never a secret) and a machine-readable `reason`: unreachable, timeout,
    unauthorized, model-not-served, server-error, unavailable, bad-request, no-route.
    """


class RemoteInputTooLong(EmberError):
    """The server says the prompt does not fit its context (its own message, its own numbers)."""

    code = INPUT_TOO_LONG
