"""SigV4 failures, worded the way AWS words them.

AWS spells the same failure differently per protocol: JSON 1.1 services (SSM, ssmmessages, Logs)
answer ``InvalidSignatureException``, Query services (IAM, STS) ``SignatureDoesNotMatch``. Every
error carries both spellings (``code``/``status``/``message`` for JSON, ``query_code``/
``query_status``/``query_message`` for Query) so the caller picks those of the protocol it answers in.
"""

from __future__ import annotations

from openssm.errors import OpenSSMError

SIGNATURE_MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method."
)


class SigV4Error(OpenSSMError):
    """A request failed SigV4 authentication; ``message`` is safe to return to the client."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        *,
        query_code: str | None = None,
        query_status: int | None = None,
        query_message: str | None = None,
        diagnostics: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.query_code = query_code or code
        self.query_status = query_status or status
        self.query_message = query_message or message
        # Canonical request and string-to-sign we computed (security tokens redacted): for server
        # logs when a real client's signature does not match; never sent back.
        self.diagnostics = diagnostics

    def __repr__(self) -> str:
        return f"SigV4Error({self.code!r}, {self.message!r}, {self.status})"


def missing_authentication() -> SigV4Error:
    return SigV4Error(
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
        403,
        query_code="MissingAuthenticationToken",
        query_message="Request is missing Authentication Token",
    )


def incomplete_signature(message: str) -> SigV4Error:
    return SigV4Error("IncompleteSignatureException", message, 400, query_code="IncompleteSignature")


def invalid_signature(
    message: str = SIGNATURE_MISMATCH_MESSAGE, *, diagnostics: str | None = None
) -> SigV4Error:
    """Signature mismatch, bad scope, or a request outside its time window (AWS uses one code for all)."""
    return SigV4Error(
        "InvalidSignatureException",
        message,
        400,
        query_code="SignatureDoesNotMatch",
        query_status=403,
        diagnostics=diagnostics,
    )


def unrecognized_client() -> SigV4Error:
    """The access key id is unknown (raised by callers after their key lookup)."""
    return SigV4Error(
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
        400,
        query_code="InvalidClientTokenId",
        query_status=403,
    )


def expired_token() -> SigV4Error:
    """Temporary credentials past their expiry (raised by callers, who know the expiry)."""
    return SigV4Error(
        "ExpiredTokenException",
        "The security token included in the request is expired",
        400,
        query_code="ExpiredToken",
        query_status=403,
    )
