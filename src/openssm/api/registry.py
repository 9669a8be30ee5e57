"""Operation registry: modules register their handlers on import, the dispatcher looks them up.

The modules are imported statically by :mod:`openssm.api.handlers`; an operation registered twice
is a wiring error, raised at import.

``auth`` says how the dispatcher authenticates before calling the handler: "sigv4" (HMAC with a
stored key; the default), "anonymous" (no signature: RegisterManagedInstance proves itself with an
activation code) or "rsa" (a managed instance signing with its registration key).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from openssm.api.request import ApiRequest
from openssm.errors import OpenSSMError

JsonHandler = Callable[[ApiRequest, dict[str, Any]], Awaitable[dict[str, Any]]]
QueryHandler = Callable[[ApiRequest, Mapping[str, str]], Awaitable[Any]]
AuthMode = Literal["sigv4", "anonymous", "rsa"]

# JSON 1.1 target prefix → SigV4 signing name, for the prefixes we know (others are not checked).
SIGNING_NAMES = {
    "AmazonSSM": "ssm",
    "EC2WindowsMessageDeliveryService": "ec2messages",
    "Logs_20140328": "logs",
    "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101": "cloudtrail",
    "OpenSSM_20261201": "openssm",
    "TrentService": "kms",  # the KMS subset of KMS session encryption (openssm.api.kms)  # OpenSSM's own API (just-in-time access: openssm.api.access)
}


@dataclasses.dataclass(frozen=True, slots=True)
class JsonOperation:
    target_prefix: str
    name: str
    handler: JsonHandler
    auth: AuthMode


@dataclasses.dataclass(frozen=True, slots=True)
class QueryOperation:
    service: str
    action: str
    xmlns: str
    handler: QueryHandler
    auth: AuthMode = "sigv4"


_json_operations: dict[str, JsonOperation] = {}
_query_operations: dict[tuple[str, str], QueryOperation] = {}
_anonymous_queries: dict[str, QueryOperation] = {}


class DuplicateOperation(OpenSSMError):
    """Two handlers for one operation."""


def json_action(
    target_prefix: str, operation: str, *, auth: AuthMode = "sigv4"
) -> Callable[[JsonHandler], JsonHandler]:
    def register(handler: JsonHandler) -> JsonHandler:
        target = f"{target_prefix}.{operation}"
        if target in _json_operations:
            raise DuplicateOperation(f"{target} is registered twice")
        _json_operations[target] = JsonOperation(target_prefix, operation, handler, auth)
        return handler

    return register


def query_action(
    service: str, action: str, *, xmlns: str, auth: AuthMode = "sigv4"
) -> Callable[[QueryHandler], QueryHandler]:
    """``auth="anonymous"``: AWS calls it unsigned (STS AssumeRoleWithWebIdentity: the token is the
    proof); an unsigned request names no service, so such an action must be unique across services."""

    def register(handler: QueryHandler) -> QueryHandler:
        if (service, action) in _query_operations or (auth == "anonymous" and action in _anonymous_queries):
            raise DuplicateOperation(f"{service} {action} is registered twice")
        operation = QueryOperation(service, action, xmlns, handler, auth)
        _query_operations[(service, action)] = operation
        if auth == "anonymous":
            _anonymous_queries[action] = operation
        return handler

    return register


def find_anonymous_query(action: str) -> QueryOperation | None:
    """The Query operation AWS lets clients call unsigned, by its action name."""
    return _anonymous_queries.get(action)


def find_json(target: str) -> JsonOperation | None:
    return _json_operations.get(target)


def find_query(service: str, action: str) -> QueryOperation | None:
    return _query_operations.get((service, action))


def registered() -> frozenset[str]:
    """Every registered operation: ``<target prefix>.<operation>`` and ``<service>:<action>``."""
    return frozenset(_json_operations) | frozenset(
        f"{service}:{action}" for service, action in _query_operations
    )
