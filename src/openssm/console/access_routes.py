"""The console's access requests page: ask for just-in-time access to a node, and, for approvers, the
requests waiting for a decision with Approve / Deny, and Revoke for running grants. Every action is
the API's own operation run as the signed-in principal (``ConsoleActor.call``), so the page can do
exactly what that principal's policies allow, and a requester never decides their own request.

Buttons are shown where the principal's policies would allow the action (``Permissions.may``, which
writes no audit record); the action itself is authorised and audited by the API when it is taken."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from openssm.api.access import vocabulary
from openssm.api.access.operations import decision_context
from openssm.api.targets import resource_tag_context, target_arn
from openssm.console.actor import ActionFailed, ConsoleActor, Permissions
from openssm.console.jsonio import json_body
from openssm.console.routes import SignedIn
from openssm.console.sessions_store import ConsoleSession
from openssm.services import Services
from openssm.store import access_requests, instances
from openssm.store.access_requests import AccessStatus

OPERATION: Final = f"{vocabulary.TARGET_PREFIX}.{{}}"
LIST_LIMIT: Final = 100
DECISIONS: Final = {
    "approve": "ApproveAccessRequest",
    "deny": "DenyAccessRequest",
    "revoke": "RevokeAccessRequest",
}


class AccessRoutes:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def _flags(
        self, item: dict[str, Any], actor: ConsoleActor, permissions: Permissions
    ) -> dict[str, bool]:
        """Which of Approve / Deny / Revoke to offer on one request."""
        row = await access_requests.get(self.services.engine, item["AccessRequestId"])
        if row is None:
            return {"CanApprove": False, "CanDeny": False, "CanRevoke": False}
        config = self.services.config
        instance = await instances.get(self.services.engine, row.target)
        context = {**resource_tag_context(instance.tags if instance else None), **decision_context(row)}
        arn = target_arn(config.region, config.account_id, row.target)
        own = row.requester_arn == actor.identity.principal.arn
        pending = row.status == AccessStatus.PENDING
        return {
            "Own": own,
            "CanApprove": pending
            and not own
            and permissions.may(vocabulary.APPROVE_ACCESS_REQUEST, arn, context),
            "CanDeny": pending and not own and permissions.may(vocabulary.DENY_ACCESS_REQUEST, arn, context),
            "CanRevoke": row.status in (AccessStatus.PENDING, AccessStatus.APPROVED)
            and permissions.may(vocabulary.REVOKE_ACCESS_REQUEST, arn, context),
        }

    async def list_requests(
        self, request: web.Request, _: ConsoleSession, actor: ConsoleActor
    ) -> web.StreamResponse:
        """Everyone's requests to a principal allowed to list them all, else the principal's own."""
        permissions = await actor.permissions()
        name = actor.identity.principal.friendly_name
        everyone = permissions.may(vocabulary.LIST_ACCESS_REQUESTS, "*")
        filters = [] if everyone else [{"key": "Requester", "value": name}]
        body = {"Filters": filters, "MaxResults": LIST_LIMIT}  # the newest
        listed = (await actor.call(OPERATION.format("ListAccessRequests"), body)).get("AccessRequests") or []
        out = [{**item, **await self._flags(item, actor, permissions)} for item in listed]
        return web.json_response({"requests": out, "scope": "all" if everyone else "own", "me": name})

    async def create_request(
        self, request: web.Request, _: ConsoleSession, actor: ConsoleActor
    ) -> web.StreamResponse:
        body = await json_body(request)
        arguments: dict[str, Any] = {
            "Target": str(body.get("target") or ""),
            "Reason": str(body.get("reason") or ""),
            "DurationSeconds": body.get("duration_seconds"),
        }
        if body.get("document_name"):
            arguments["DocumentName"] = str(body["document_name"])
        created = await actor.call(OPERATION.format("RequestAccess"), arguments)
        return web.json_response(created)

    async def decide(
        self, request: web.Request, _: ConsoleSession, actor: ConsoleActor
    ) -> web.StreamResponse:
        operation = DECISIONS.get(request.match_info["decision"])
        if operation is None:
            raise ActionFailed("UnknownOperationException", "Not a decision on an access request.", 404)
        body = await json_body(request)
        arguments: dict[str, Any] = {"AccessRequestId": request.match_info["request_id"]}
        if body.get("reason"):
            arguments["Reason"] = str(body["reason"])
        return web.json_response(await actor.call(OPERATION.format(operation), arguments))


def add_routes(router: web.UrlDispatcher, services: Services, signed_in: SignedIn) -> None:
    routes = AccessRoutes(services)
    base = "/console/api/access-requests"
    router.add_get(base, signed_in(routes.list_requests, changes_state=False))
    router.add_post(base, signed_in(routes.create_request, changes_state=True))
    router.add_post(f"{base}/{{request_id}}/{{decision}}", signed_in(routes.decide, changes_state=True))
