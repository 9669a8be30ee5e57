"""API errors in AWS's shape: a code clients branch on, a message for humans, an HTTP status."""

from __future__ import annotations

from openssm.errors import OpenSSMError


class ApiError(OpenSSMError):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def validation_error(message: str) -> ApiError:
    return ApiError("ValidationException", message)
