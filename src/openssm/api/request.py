"""What a handler gets besides its input: the services, who is calling, and how to authorise."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from openssm.security import AuditBatch, Identity, RequestFacts, authorize, refuse_by_rule
from openssm.security.identity import InstanceAuth
from openssm.services import Services

_NO_EXTRA: Mapping[str, Sequence[str]] = {}


@dataclasses.dataclass(slots=True)
class ApiRequest:
    services: Services
    identity: Identity | None  # None for anonymous operations (RegisterManagedInstance)
    facts: RequestFacts
    request_id: str
    # An RSA-signed call's sender (``auth="rsa"``): its instance's row as authentication read it.
    instance_auth: InstanceAuth | None = None

    @property
    def region(self) -> str:
        return self.services.config.region

    @property
    def account(self) -> str:
        return self.services.config.account_id

    def now(self) -> dt.datetime:
        """The time of the server's one clock (``Services.clock``)."""
        return self.services.clock.now()

    def require_identity(self) -> Identity:
        if self.identity is None:  # the dispatcher authenticates every operation not marked anonymous
            raise RuntimeError("handler needs an authenticated caller")
        return self.identity

    async def authorize(
        self,
        action: str,
        resources: Sequence[str],
        extra_context: Mapping[str, Sequence[str]] = _NO_EXTRA,
        *,
        detail: dict[str, Any] | None = None,
        batch: AuditBatch | None = None,
    ) -> None:
        await authorize(
            self.services,
            self.require_identity(),
            action,
            resources,
            self.facts,
            extra_context,
            detail=detail,
            batch=batch,
        )

    async def refuse_by_rule(
        self, action: str, resource: str, *, rule: str, because: str, detail: dict[str, Any] | None = None
    ) -> NoReturn:
        """Refuse the caller what one of OpenSSM's own rules forbids (``security.refuse_by_rule``)."""
        await refuse_by_rule(
            self.services,
            self.require_identity(),
            action,
            resource,
            self.facts,
            rule=rule,
            because=because,
            detail=detail,
        )
