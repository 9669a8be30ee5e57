"""JSON endpoints behind the console pages. Each one runs API operations as the signed-in principal.

Each is wrapped by the console's :class:`SignedIn` guard (``Console.signed_in`` in
:mod:`openssm.console.app`, which mounts these routes), which finds the console session and its actor."""

from __future__ import annotations

import pathlib
import re
import shlex
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from aiohttp import web

from openssm.api.targets import resource_tag_context, target_arn
from openssm.console import join_routes
from openssm.console.actor import ActionFailed, ConsoleActor
from openssm.console.jsonio import json_body
from openssm.console.sessions_store import ConsoleSession
from openssm.iam.arn import session_arn
from openssm.services import Services
from openssm.store import instances, sessions
from openssm.store.sessions import SessionRow

MAX_RECORDING_BYTES: Final = 64 * 1024 * 1024
HISTORY_LIMIT: Final = 200
SESSION_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9@._+=,-]{1,96}$")
TARGET_PATTERN: Final = re.compile(r"^(mi-[0-9a-f]{17}|i-[0-9a-f]{8,17})$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SignedInHandler = Callable[[web.Request, ConsoleSession, ConsoleActor], Awaitable[web.StreamResponse]]


class SignedIn(Protocol):
    """Wraps a handler for signed-in users; ``changes_state`` adds the Origin and CSRF checks."""

    def __call__(self, handler: SignedInHandler, *, changes_state: bool) -> Handler: ...


def _session_resource_context(row: dict[str, Any]) -> dict[str, list[str]]:
    return {
        "ssm:resourceTag/aws:ssmmessages:session-id": [row["SessionId"]],
        "ssm:resourceTag/aws:ssmmessages:target-id": [row["Target"]],
    }


class Routes:
    def __init__(self, services: Services) -> None:
        self.services = services

    # -- nodes ---------------------------------------------------------------------------------------

    async def list_nodes(
        self, request: web.Request, _: ConsoleSession, actor: ConsoleActor
    ) -> web.StreamResponse:
        listed = await actor.all_pages(
            "DescribeInstanceInformation", {"MaxResults": 50}, "InstanceInformationList"
        )
        permissions = await actor.permissions()
        region, account = self.services.config.region, self.services.config.account_id
        out = []
        for info in listed:
            instance = await instances.get(self.services.engine, info["InstanceId"])
            tags = instance.tags if instance is not None else {}
            arn = target_arn(region, account, info["InstanceId"])
            context = resource_tag_context(tags)
            item = {
                key: info.get(key)
                for key in (
                    "InstanceId",
                    "Name",
                    "ComputerName",
                    "PingStatus",
                    "PlatformType",
                    "PlatformName",
                    "PlatformVersion",
                    "AgentVersion",
                    "IPAddress",
                    "LastPingDateTime",
                )
            }
            # Tags are shown only to principals that may read them, as ListTagsForResource would.
            item["Tags"] = tags if permissions.may("ssm:ListTagsForResource", arn, context) else None
            item["CanStartSession"] = permissions.may("ssm:StartSession", arn, context)
            out.append(item)
        return web.json_response({"nodes": out})

    # -- sessions ------------------------------------------------------------------------------------

    async def list_sessions(
        self, request: web.Request, _: ConsoleSession, actor: ConsoleActor
    ) -> web.StreamResponse:
        state = request.query.get("state", "Active")
        if state not in ("Active", "History"):
            raise web.HTTPBadRequest(text="state must be Active or History")
        found = await actor.ssm("DescribeSessions", {"State": state, "MaxResults": HISTORY_LIMIT})
        permissions = await actor.permissions()
        region, account = self.services.config.region, self.services.config.account_id
        out = []
        for item in found.get("Sessions") or []:
            row = await sessions.get(self.services.engine, item["SessionId"])
            recording = row.recording_path if row is not None else None
            entry = dict(item)
            entry["TerminationReason"] = row.termination_reason if row is not None else None
            entry["OwnerName"] = row.owner_name if row is not None else None
            entry["Recording"] = _recording_name(recording)
            entry["Replayable"] = bool(recording and recording.endswith(".cast"))
            arn, context = session_arn(region, account, item["SessionId"]), _session_resource_context(item)
            entry["CanTerminate"] = state == "Active" and permissions.may(
                "ssm:TerminateSession", arn, context
            )
            if state == "Active":  # live-session join: Watch, Join, the owner's join policy
                entry.update(
                    await join_routes.join_flags(self.services, row, arn, context, actor, permissions)
                )
            out.append(entry)
        return web.json_response({"sessions": out})

    async def start_session(
        self, request: web.Request, _: ConsoleSession, actor: ConsoleActor
    ) -> web.StreamResponse:
        body = await json_body(request)
        target = body.get("target")
        if not isinstance(target, str) or not TARGET_PATTERN.match(target):
            return web.json_response(
                {"error": "ValidationException", "message": "Not a node id."}, status=400
            )
        started = await actor.ssm("StartSession", {"Target": target, "Reason": "Browser console"})
        return web.json_response(
            {
                "SessionId": started["SessionId"],
                "StreamUrl": started["StreamUrl"],
                "TokenValue": started["TokenValue"],
                "Target": target,
            }
        )

    async def terminate_session(
        self, request: web.Request, _: ConsoleSession, actor: ConsoleActor
    ) -> web.StreamResponse:
        session_id = request.match_info["session_id"]
        result = await actor.ssm("TerminateSession", {"SessionId": session_id})
        return web.json_response(result)

    async def resume_session(
        self, request: web.Request, _: ConsoleSession, actor: ConsoleActor
    ) -> web.StreamResponse:
        """A new token for a shell whose socket dropped (the page re-dials the same StreamUrl)."""
        session_id = request.match_info["session_id"]
        resumed = await actor.ssm("ResumeSession", {"SessionId": session_id})
        return web.json_response({"SessionId": resumed["SessionId"], "TokenValue": resumed["TokenValue"]})

    async def recording(
        self, request: web.Request, _: ConsoleSession, actor: ConsoleActor
    ) -> web.StreamResponse:
        """The asciicast of a finished or running shell session, to principals allowed to list it."""
        session_id = request.match_info["session_id"]
        if not SESSION_ID_PATTERN.match(session_id):
            raise web.HTTPNotFound()
        visible = False
        for state in ("History", "Active"):
            listed = await actor.ssm(
                "DescribeSessions",
                {"State": state, "Filters": [{"key": "SessionId", "value": session_id}]},
            )
            visible = visible or any(s["SessionId"] == session_id for s in listed.get("Sessions") or [])
        row = await sessions.get(self.services.engine, session_id) if visible else None
        path = _recording_file(self.services.config.data_dir, row)
        if path is None:
            raise ActionFailed(
                "NoRecording", f"There is no shell recording of {session_id} on this server.", 404
            )
        return web.FileResponse(path, headers={"Content-Type": "application/x-asciicast; charset=utf-8"})

    # -- activations ---------------------------------------------------------------------------------

    async def list_activations(
        self, request: web.Request, _: ConsoleSession, actor: ConsoleActor
    ) -> web.StreamResponse:
        listed = await actor.all_pages("DescribeActivations", {"MaxResults": 50}, "ActivationList")
        return web.json_response({"activations": listed})

    async def create_activation(
        self, request: web.Request, _: ConsoleSession, actor: ConsoleActor
    ) -> web.StreamResponse:
        body = await json_body(request)
        arguments: dict[str, Any] = {"IamRole": str(body.get("iam_role") or "OpenSSMNodeRole")}
        if body.get("description"):
            arguments["Description"] = str(body["description"])
        if body.get("default_instance_name"):
            arguments["DefaultInstanceName"] = str(body["default_instance_name"])
        limit = body.get("registration_limit")
        if isinstance(limit, int) and not isinstance(limit, bool):
            arguments["RegistrationLimit"] = limit
        created = await actor.ssm("CreateActivation", arguments)
        config = self.services.config
        register = shlex.join(
            [
                "openssm",
                "agent",
                "register",
                "--endpoint",
                config.public_url,
                "--code",
                created["ActivationCode"],
                "--id",
                created["ActivationId"],
                "--region",
                config.region,
            ]
        )
        return web.json_response(
            {
                "ActivationId": created["ActivationId"],
                "ActivationCode": created["ActivationCode"],
                # Run as root on the node (which has the openssm package): register once, then run.
                "InstallCommand": f"sudo {register} && sudo openssm agent run",
                "RegisterCommand": register,
            }
        )


def _recording_name(path: str | None) -> str | None:
    return pathlib.PurePath(path).name if path else None


def _recording_file(data_dir: pathlib.Path, row: SessionRow | None) -> pathlib.Path | None:
    """The recording named by the session row, if it is a .cast file inside the server's data dir."""
    if row is None or not row.recording_path:
        return None
    path = pathlib.Path(row.recording_path).resolve()
    if path.suffix != ".cast" or not path.is_relative_to(data_dir.resolve()) or not path.is_file():
        return None
    if path.stat().st_size > MAX_RECORDING_BYTES:
        return None
    return path


def add_routes(router: web.UrlDispatcher, services: Services, signed_in: SignedIn) -> None:
    routes = Routes(services)
    base = "/console/api"
    router.add_get(f"{base}/nodes", signed_in(routes.list_nodes, changes_state=False))
    router.add_get(f"{base}/sessions", signed_in(routes.list_sessions, changes_state=False))
    router.add_post(f"{base}/sessions", signed_in(routes.start_session, changes_state=True))
    router.add_post(
        f"{base}/sessions/{{session_id}}/terminate",
        signed_in(routes.terminate_session, changes_state=True),
    )
    router.add_post(
        f"{base}/sessions/{{session_id}}/resume",
        signed_in(routes.resume_session, changes_state=True),
    )
    router.add_get(
        f"{base}/sessions/{{session_id}}/recording", signed_in(routes.recording, changes_state=False)
    )
    router.add_get(f"{base}/activations", signed_in(routes.list_activations, changes_state=False))
    router.add_post(f"{base}/activations", signed_in(routes.create_activation, changes_state=True))
