"""Security failures, carrying the AWS error code, message and HTTP status a client expects."""

from __future__ import annotations

from openssm.errors import OpenSSMError


class SecurityError(OpenSSMError):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class AuthError(SecurityError):
    """Authentication failed (unknown key, bad signature, expired token …)."""


class AccessDenied(SecurityError):
    """An authenticated principal is not allowed the action (on ``resource``, when one was checked)."""

    def __init__(self, message: str, *, action: str | None = None, resource: str | None = None) -> None:
        super().__init__("AccessDeniedException", message, 400)
        self.action = action
        self.resource = resource
