"""The API endpoint: ``POST /`` for every service, JSON 1.1 by ``X-Amz-Target``, Query by ``Action``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time
import urllib.parse
from typing import Any, Final

from aiohttp import web

from openssm.api import handlers, registry  # noqa: F401 - importing handlers registers every operation
from openssm.api.errors import ApiError, validation_error
from openssm.api.query_xml import render_error, render_response
from openssm.api.rate_limit import THROTTLED_CODE, THROTTLED_MESSAGE, TokenBuckets, family
from openssm.api.request import ApiRequest
from openssm.auth.sigv4 import HttpRequest, SigV4Error, parse_request
from openssm.ops import requestid
from openssm.ops.metrics import UNKNOWN_ACTION
from openssm.ops.refusals import refused, unauthenticated
from openssm.security import Identity, authenticate, authenticate_managed_instance, client_facts
from openssm.security.errors import AccessDenied, AuthError, SecurityError
from openssm.security.facts import peer_address
from openssm.security.identity import InstanceAuth, has_signature
from openssm.services import Services
from openssm.store import trace
from openssm.store.db import DatabaseBusy
from openssm.transport.bounded_read import BodyTooLarge, read_bounded

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


async def _read_bounded(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError("RequestEntityTooLargeException", f"Request body exceeds {MAX_BODY_BYTES} bytes", 413)
    try:
        return await read_bounded(request.content, MAX_BODY_BYTES)
    except BodyTooLarge as exc:
        raise ApiError(
            "RequestEntityTooLargeException", f"Request body exceeds {MAX_BODY_BYTES} bytes", 413
        ) from exc


def _http_request(request: web.Request, body: bytes) -> HttpRequest:
    path, _, query = request.raw_path.partition("?")
    headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.raw_headers]
    return HttpRequest(method=request.method, path=path, query=query, headers=headers, body=body)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(child) for key, child in value.items() if child is not None}
    if isinstance(value, list):
        return [_without_nulls(child) for child in value]
    return value


def _json_response(payload: dict[str, Any], request_id: str, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(_without_nulls(payload), separators=(",", ":")).encode(),
        headers={"Content-Type": JSON_CONTENT_TYPE, "x-amzn-RequestId": request_id},
    )


def _json_error(code: str, message: str, status: int, request_id: str) -> web.Response:
    response = _json_response({"__type": code, "message": message}, request_id, status)
    response.headers["x-amzn-ErrorType"] = code
    return response


# The JSON escape of a UTF-16 surrogate (U+D800-U+DFFF): a pair is one character, half of one is none.
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")


def _parse_json_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise validation_error(f"Request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # a deeply nested body: refuse it, do not crash on it
        raise validation_error("Request body is nested too deeply") from exc
    if not isinstance(parsed, dict):
        raise validation_error("Request body must be a JSON object")
    if _SURROGATE_ESCAPE.search(body) is not None:  # most bodies escape no surrogate: skip the walk
        try:
            json.dumps(parsed, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:  # a lone half: no member may hold it (nor a database store it)
            raise validation_error(
                "Request body holds a string that is not valid Unicode (a lone surrogate)"
            ) from exc
        except RecursionError as exc:
            raise validation_error("Request body is nested too deeply") from exc
    return parsed


def _check_signing_name(operation: registry.JsonOperation, identity: Identity) -> None:
    expected = registry.SIGNING_NAMES.get(operation.target_prefix)
    if expected is not None and identity.service != expected:
        raise AuthError(
            "InvalidSignatureException", f"Credential should be scoped to correct service: '{expected}'."
        )


@dataclasses.dataclass(slots=True)
class _Exchange:
    """What is known about one API request as it is handled: for its metrics and its log line."""

    request_id: str
    action: str = UNKNOWN_ACTION  # metrics label: a registered operation's action, or "unknown"
    requested: str | None = None  # what the caller asked for (logged, bounded), even if unknown
    principal: str | None = None


def _claimed_key(http_request: HttpRequest) -> str | None:
    """The access key id a request names (not a secret), to say who a refused request claimed to be."""
    try:
        return parse_request(http_request).access_key_id
    except SigV4Error:
        return None


def _json_action(operation: registry.JsonOperation) -> str:
    service = registry.SIGNING_NAMES.get(operation.target_prefix, operation.target_prefix)
    return f"{service}:{operation.name}"


class ApiDispatcher:
    def __init__(self, services: Services) -> None:
        self.services = services
        rate, burst = services.config.api_rate_limit, services.config.api_rate_burst
        self._rate_limits = None if rate is None else TokenBuckets(rate, burst or max(1.0, 2 * rate))

    def _throttle(self, principal_arn: str, action: str) -> None:
        """AWS's answer to a principal calling an action family faster than the configured limit."""
        limits = self._rate_limits
        if limits is not None and not limits.take(
            (principal_arn, family(action)), self.services.clock.monotonic()
        ):
            raise ApiError(THROTTLED_CODE, THROTTLED_MESSAGE)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        exchange = _Exchange(requestid.of(request))
        with trace.step("api", "") as step:
            response = await self._answer(request, exchange)
            step.name = exchange.action
        metrics = self.services.metrics
        metrics.api_requests.labels(exchange.action, str(response.status)).inc()
        metrics.api_request_duration.labels(exchange.action).observe(time.perf_counter() - started)
        return response

    async def _answer(self, request: web.Request, exchange: _Exchange) -> web.StreamResponse:
        request_id = exchange.request_id
        is_json = "X-Amz-Target" in request.headers
        http_request: HttpRequest | None = None
        try:
            try:
                body = await _read_bounded(request)
                http_request = _http_request(request, body)
                if is_json:
                    return await self._json(request, http_request, body, exchange)
                return await self._query(request, http_request, body, exchange)
            except DatabaseBusy as exc:  # every connection in use for the pool's wait: slow down
                raise ApiError(THROTTLED_CODE, THROTTLED_MESSAGE) from exc
        except (ApiError, SecurityError) as exc:
            self._log_refusal(exchange, exc, http_request)
            if is_json:
                return _json_error(exc.code, exc.message, exc.status, request_id)
            return self._xml(
                render_error(exc.code, exc.message, exc.status, request_id), exc.status, request_id
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("internal error in request %s", request_id)
            if is_json:
                return _json_error("InternalServerError", "An internal error occurred.", 500, request_id)
            return self._xml(
                render_error("InternalFailure", "An internal error occurred.", 500, request_id),
                500,
                request_id,
            )

    @staticmethod
    def _log_refusal(
        exchange: _Exchange, exc: ApiError | SecurityError, http_request: HttpRequest | None
    ) -> None:
        principal = exchange.principal
        if principal is None:
            principal = unauthenticated(_claimed_key(http_request) if http_request is not None else None)
        resource = exc.resource if isinstance(exc, (ApiError, AccessDenied)) else None
        refused(
            "api",
            principal=principal,
            action=exchange.requested or exchange.action,
            resource=resource,
            code=exc.code,
            reason=exc.message,
        )

    async def _identity(
        self, request: web.Request, http_request: HttpRequest, auth: registry.AuthMode
    ) -> tuple[Identity | None, InstanceAuth | None]:
        """Who calls; for an RSA-signed call also its instance's row (read to check the signature)."""
        if auth == "anonymous":
            return None, None
        if auth == "rsa":
            signed = await authenticate_managed_instance(self.services, http_request)
            return signed.identity, signed
        return await authenticate(self.services, http_request, peer_ip=peer_address(request)), None

    async def _json(
        self, request: web.Request, http_request: HttpRequest, body: bytes, exchange: _Exchange
    ) -> web.Response:
        request_id = exchange.request_id
        target = request.headers["X-Amz-Target"]
        exchange.requested = target[:128]
        operation = registry.find_json(target)
        if operation is None:
            raise ApiError("UnknownOperationException", f"Unknown operation {target[:128]!r}")
        exchange.action = exchange.requested = _json_action(operation)
        identity, instance_auth = await self._identity(request, http_request, operation.auth)
        if identity is not None:
            exchange.principal = identity.principal.arn
            _check_signing_name(operation, identity)
            self._throttle(identity.principal.arn, exchange.action)
        region = identity.region if identity is not None else self.services.config.region
        arguments = _parse_json_body(body)
        api_request = ApiRequest(
            self.services,
            identity,
            client_facts(request, self.services.config, region),
            request_id,
            instance_auth,
        )
        result = await operation.handler(api_request, arguments)
        return _json_response(result, request_id)

    async def _query(
        self, request: web.Request, http_request: HttpRequest, body: bytes, exchange: _Exchange
    ) -> web.Response:
        request_id = exchange.request_id
        try:
            form = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError as exc:
            raise ApiError("MalformedQueryString", "Request body is not UTF-8 form data") from exc
        form.update(urllib.parse.parse_qsl(http_request.query, keep_blank_values=True))
        action = form.get("Action")
        if not action:
            raise ApiError(
                "MissingAction", "Request is missing an X-Amz-Target header or an Action parameter"
            )
        exchange.requested = action[:128]
        anonymous = registry.find_anonymous_query(action)
        if anonymous is not None and not has_signature(http_request):  # AssumeRoleWithWebIdentity: unsigned
            exchange.action = exchange.requested = f"{anonymous.service}:{anonymous.action}"
            facts = client_facts(request, self.services.config, self.services.config.region)
            result = await anonymous.handler(ApiRequest(self.services, None, facts, request_id), form)
            return self._xml(render_response(action, anonymous.xmlns, result, request_id), 200, request_id)
        identity = await authenticate(self.services, http_request, peer_ip=peer_address(request))
        exchange.principal = identity.principal.arn
        operation = registry.find_query(identity.service, action)
        if operation is None:
            version = form.get("Version", "")
            raise ApiError("InvalidAction", f"Could not find operation {action} for version {version}")
        exchange.action = exchange.requested = f"{identity.service}:{operation.action}"
        self._throttle(identity.principal.arn, exchange.action)
        facts = client_facts(request, self.services.config, identity.region)
        result = await operation.handler(ApiRequest(self.services, identity, facts, request_id), form)
        return self._xml(render_response(action, operation.xmlns, result, request_id), 200, request_id)

    @staticmethod
    def _xml(text: str, status: int, request_id: str) -> web.Response:
        return web.Response(
            status=status, text=text, content_type="text/xml", headers={"x-amzn-RequestId": request_id}
        )


def install(app: web.Application, services: Services) -> None:
    """Mount ``POST /`` for every operation of :mod:`openssm.api.handlers`."""
    dispatcher = ApiDispatcher(services)
    app.router.add_post("/", dispatcher.handle)

    async def write_buffered_pings(_: web.Application) -> None:
        await services.pings.close(services.engine)

    app.on_cleanup.append(write_buffered_pings)
