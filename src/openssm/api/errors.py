"""API errors in AWS's shape: a code clients branch on, a message for humans, an HTTP status.

Store refusals (:mod:`openssm.store.errors`) become AWS errors here and only here
(:func:`from_store`), so the store knows nothing of HTTP.
"""

from __future__ import annotations

from typing import Final

from openssm.errors import OpenSSMError
from openssm.store.errors import (
    DeleteConflict,
    EntityAlreadyExists,
    LimitExceeded,
    NoSuchEntity,
    NotModifiable,
    StoreError,
)


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


# AWS's code and HTTP status for each store refusal (IAM's spellings: the only API that has them).
STORE_ERRORS: Final[dict[type[StoreError], tuple[str, int]]] = {
    NoSuchEntity: ("NoSuchEntity", 404),
    EntityAlreadyExists: ("EntityAlreadyExists", 409),
    DeleteConflict: ("DeleteConflict", 409),
    LimitExceeded: ("LimitExceeded", 409),
    NotModifiable: ("InvalidInput", 400),
}


def from_store(exc: StoreError) -> ApiError:
    code, status = STORE_ERRORS[type(exc)]
    return ApiError(code, exc.message, status)
