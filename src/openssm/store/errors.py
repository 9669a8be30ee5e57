"""Why the store refused a change, in the domain's words; the API layer decides how to say it on the
wire (``openssm.api.errors.from_store``: AWS error code and HTTP status).

The message is for the caller's user and is the one AWS gives for the same refusal (clients and
tests compare it), e.g. "The user with name alice cannot be found."
"""

from __future__ import annotations

from openssm.errors import OpenSSMError


class StoreError(OpenSSMError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NoSuchEntity(StoreError):
    """The entity (or the one it hangs off) does not exist."""


class EntityAlreadyExists(StoreError):
    """Its name (unique case-insensitively, as in AWS) is taken."""


class DeleteConflict(StoreError):
    """Other entities still depend on it (attached policies, group members, access keys …)."""


class LimitExceeded(StoreError):
    """A quota would be exceeded (policy versions, attached policies, access keys, tags …)."""


class NotModifiable(StoreError):
    """It is read-only to the account (an AWS managed policy)."""
