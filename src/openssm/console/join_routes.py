"""Live-session join in the console: "Watch" and "Join" on the sessions page, and the owner's
"Refuse joins" / "Allow joins". Each runs OpenSSM's JoinSession or SetSessionJoinPolicy as the
signed-in principal; the page then opens the shell page on the StreamUrl and token it got."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from openssm.api.access.vocabulary import TARGET_PREFIX
from openssm.api.session_join import JOIN_MODE_KEY, JOIN_SESSION
from openssm.console.actor import ConsoleActor, Permissions
from openssm.console.jsonio import json_body
from openssm.console.sessions_store import ConsoleSession
from openssm.protocol.joining import JoinMode, joinable
from openssm.services import Services
from openssm.store import session_joins
from openssm.store.sessions import SessionRow

OPERATION: Final = f"{TARGET_PREFIX}.{{}}"


async def join_flags(
    services: Services, row: SessionRow | None, arn: str, context: dict[str, list[str]], actor: ConsoleActor,
    permissions: Permissions,
) -> dict[str, Any]:  # fmt: skip
    """What the sessions page may offer for one active session: Watch, Join, and (to its owner) the
    join policy."""
    if row is None or joinable(row.as_mapping()) is not None:
        return {"CanWatch": False, "CanJoin": False, "Mine": False, "JoinsRefused": False}
    refused = await session_joins.refuses(services.engine, row.session_id)

    def may(mode: JoinMode) -> bool:
        return not refused and permissions.may(JOIN_SESSION, arn, {**context, JOIN_MODE_KEY: [mode]})

    return {
        "CanWatch": may(JoinMode.READ_ONLY),
        "CanJoin": may(JoinMode.READ_WRITE),
        "Mine": row.owner_arn == actor.identity.principal.arn,
        "JoinsRefused": refused,
    }


class JoinRoutes:
    async def join(self, request: web.Request, _: ConsoleSession, actor: ConsoleActor) -> web.StreamResponse:
        body = await json_body(request)
        arguments = {
            "SessionId": request.match_info["session_id"],
            "ReadOnly": body.get("readOnly") is True,
            "LastScreen": True,  # a browser tab starts empty: show what is on the screen now
        }
        joined = await actor.call(OPERATION.format("JoinSession"), arguments)
        return web.json_response({key: joined[key] for key in ("SessionId", "StreamUrl", "TokenValue")})

    async def join_policy(
        self, request: web.Request, _: ConsoleSession, actor: ConsoleActor
    ) -> web.StreamResponse:
        body = await json_body(request)
        arguments = {"SessionId": request.match_info["session_id"], "AllowJoins": body.get("allow") is True}
        return web.json_response(await actor.call(OPERATION.format("SetSessionJoinPolicy"), arguments))


def add_routes(router: web.UrlDispatcher, signed_in: Any) -> None:
    routes = JoinRoutes()
    base = "/console/api/sessions/{session_id}"
    router.add_post(f"{base}/join", signed_in(routes.join, changes_state=True))
    router.add_post(f"{base}/join-policy", signed_in(routes.join_policy, changes_state=True))
