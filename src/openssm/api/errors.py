"""API errors in AWS's shape: a code clients branch on, a message for humans, an HTTP status."""

from __future__ import annotations

from openssm.errors import OpenSSMError


class ApiError(OpenSSMError):
    """``resource``: the ARN the refusal is about, when there is one (it goes to the server's log)."""

    def __init__(self, code: str, message: str, status: int = 400, *, resource: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.resource = resource


def validation_error(message: str) -> ApiError:
    return ApiError("ValidationException", message)
