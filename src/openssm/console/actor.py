"""Acting for the signed-in principal: the console calls the registered API handlers in-process with
an ``ApiRequest`` for that principal, so every decision is the API's own authorisation."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from openssm.api import registry
from openssm.api.errors import ApiError
from openssm.api.request import ApiRequest
from openssm.errors import OpenSSMError
from openssm.iam import AuthzRequest, PolicySource, evaluate
from openssm.security import Identity, RequestFacts
from openssm.security.authorization import request_context
from openssm.security.errors import SecurityError
from openssm.security.policies import policies_for
from openssm.services import Services

_NO_EXTRA: Mapping[str, Sequence[str]] = {}


class ActionFailed(OpenSSMError):
    """An API operation refused or failed; carries the AWS code and message to show the user."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    @property
    def denied(self) -> bool:
        return self.code in ("AccessDeniedException", "AccessDenied")


@dataclasses.dataclass(slots=True)
class ConsoleActor:
    services: Services
    identity: Identity
    facts: RequestFacts

    def _request(self) -> ApiRequest:
        return ApiRequest(self.services, self.identity, self.facts, str(uuid.uuid4()))

    async def ssm(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run ``AmazonSSM.<operation>`` as the principal; API errors become :class:`ActionFailed`."""
        return await self.call(f"AmazonSSM.{operation}", body)

    async def call(self, target: str, body: dict[str, Any]) -> dict[str, Any]:
        """Run the JSON 1.1 operation ``target`` (``<prefix>.<operation>``) as the principal."""
        found = registry.find_json(target)
        if found is None:
            raise ActionFailed("UnknownOperationException", f"{target} is not available", 501)
        try:
            return await found.handler(self._request(), body)
        except (ApiError, SecurityError) as exc:
            raise ActionFailed(exc.code, exc.message, 403 if _is_denial(exc.code) else exc.status) from exc

    async def all_pages(self, operation: str, body: dict[str, Any], list_key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(1000):  # bounded: 1000 pages of up to 50-200 items
            page_body = dict(body, NextToken=token) if token else dict(body)
            result = await self.ssm(operation, page_body)
            items.extend(result.get(list_key) or [])
            token = result.get("NextToken")
            if not token:
                break
        return items

    async def permissions(self) -> Permissions:
        """A checker for many "may I?" questions, loading the principal's policies once."""
        policies = await policies_for(self.services.engine, self.identity.principal)
        return Permissions(self, policies)


@dataclasses.dataclass(slots=True)
class Permissions:
    """Would an action be allowed? For deciding which buttons and columns to show only: it writes
    no audit record; the action itself is authorised (and audited) by the API when it is taken."""

    actor: ConsoleActor
    policies: Sequence[PolicySource]

    def may(self, action: str, resource: str, extra_context: Mapping[str, Sequence[str]] = _NO_EXTRA) -> bool:
        identity = self.actor.identity
        context = request_context(identity, self.actor.facts, self.actor.services.clock.now(), extra_context)
        return evaluate(
            self.policies, AuthzRequest(identity.principal, action, resource, context)
        ).decision == ("allowed")


def _is_denial(code: str) -> bool:
    return code in ("AccessDeniedException", "AccessDenied")
