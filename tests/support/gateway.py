"""A message gateway on loopback with a real store, for gateway tests.

State is set up by writing rows straight into the store (instances, sessions, channel tokens, an
agent's IAM user or instance role with its access key, the secret encrypted by SecretCipher), and
agent requests are SigV4-signed with ``openssm.auth.sigv4.sign_hmac`` — the same code paths a real
agent exercises, without a real agent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import pathlib
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from openssm.auth.sigv4 import sign_hmac
from openssm.bus.base import Bus
from openssm.bus.inprocess import InProcessBus
from openssm.clock import SYSTEM_CLOCK, Clock
from openssm.gateway.app import install
from openssm.gateway.extension import NodeExtension
from openssm.gateway.jobs import RunCommandJobs
from openssm.gateway.node import GatewayNode
from openssm.gateway.settings import GatewaySettings
from openssm.protocol.frames import Frame, decode
from openssm.services import ServerConfig, Services
from openssm.store import channel_tokens
from openssm.store import sessions as session_store
from openssm.store.channel_tokens import TokenKind
from openssm.store.db import database_url_for, make_engine, migrate
from openssm.store.secrets import SecretCipher
from openssm.store.sessions import SessionRow
from openssm.store.tables import (
    access_keys,
    iam_inline_policies,
    iam_roles,
    iam_users,
    instances,
    sessions,
)
from tests.support.wait import wait_for as wait_for

ACCOUNT = "123456789012"
REGION = "us-east-1"
NODE_ID = "node-test"
# The AWS documentation dummies the captures were signed with.
AGENT_KEY_ID = "AKIDEXAMPLE"
AGENT_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
AGENT_USER = "agent"
ALLOW_MGS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ssmmessages:*", "Resource": "*"}],
    }
)
SHELL_DOCUMENT: dict[str, Any] = {
    "schemaVersion": "1.0",
    "description": "Document to run single interactive command on an instance",
    "sessionType": "InteractiveCommands",
    "parameters": {"command": {"type": "String", "description": "The command to run on the instance"}},
    "inputs": {},
    "properties": {"linux": {"commands": "{{ command }}", "runAsElevated": True}},
}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass
class Gateway:
    services: Services
    node: GatewayNode
    server: TestServer
    http: aiohttp.ClientSession

    @property
    def engine(self) -> Any:
        return self.services.engine

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    @property
    def host(self) -> str:
        return f"{self.server.host}:{self.server.port}"

    # -- rows ---------------------------------------------------------------------------------------

    async def add_instance(self, instance_id: str, *, iam_role: str | None = None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                instances.insert().values(
                    instance_id=instance_id,
                    iam_role=iam_role,
                    public_key="",
                    fingerprint=str(uuid.uuid4()),
                    registration_date=now(),
                    tags={},
                )
            )

    async def add_agent_user(
        self, key_id: str = AGENT_KEY_ID, secret: str = AGENT_SECRET, policy: str = ALLOW_MGS
    ) -> None:
        """An IAM user whose access key an agent runs with (CustomIdentity / DEFAULT credentials)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                iam_users.insert().values(
                    name=AGENT_USER,
                    user_id="AIDAAGENTEXAMPLE0001",
                    arn=f"arn:aws:iam::{ACCOUNT}:user/{AGENT_USER}",
                    path="/",
                    created_at=now(),
                    tags={},
                )
            )
            await conn.execute(
                iam_inline_policies.insert().values(
                    principal_type="user", principal_name=AGENT_USER, policy_name="mgs", document=policy
                )
            )
            await self._insert_key(conn, key_id, secret, "user", AGENT_USER, None)

    async def add_instance_identity(self, instance_id: str, key_id: str, secret: str) -> None:
        """A managed instance acting as its role (the way registered agents authenticate)."""
        role = "NodeRole"
        async with self.engine.begin() as conn:
            exists = (await conn.execute(iam_roles.select().where(iam_roles.c.name == role))).first()
            if exists is None:
                await conn.execute(
                    iam_roles.insert().values(
                        name=role,
                        role_id="AROANODEROLEEXAMPLE01",
                        arn=f"arn:aws:iam::{ACCOUNT}:role/{role}",
                        path="/",
                        assume_role_policy="{}",
                        created_at=now(),
                        tags={},
                    )
                )
                await conn.execute(
                    iam_inline_policies.insert().values(
                        principal_type="role", principal_name=role, policy_name="mgs", document=ALLOW_MGS
                    )
                )
        await self.add_instance(instance_id, iam_role=role)
        async with self.engine.begin() as conn:
            await self._insert_key(conn, key_id, secret, "managed-instance", instance_id, role)

    async def _insert_key(
        self, conn: Any, key_id: str, secret: str, kind: str, name: str, role: str | None
    ) -> None:
        await conn.execute(
            access_keys.insert().values(
                access_key_id=key_id,
                secret_encrypted=self.services.cipher.encrypt(secret.encode()),
                status="Active",
                principal_type=kind,
                principal_name=name,
                role_name=role,
                created_at=now(),
            )
        )

    async def add_session(
        self,
        session_id: str,
        target: str,
        *,
        document: dict[str, Any] | None = None,
        document_name: str = "AWS-StartInteractiveCommand",
        parameters: dict[str, list[str]] | None = None,
        idle_minutes: int | None = None,
        max_minutes: int | None = None,
        node_id: str = NODE_ID,
        status: str = "Connecting",
    ) -> None:
        """A sessions row as StartSession writes it."""
        async with self.engine.begin() as conn:
            await conn.execute(
                sessions.insert().values(
                    session_id=session_id,
                    target=target,
                    document_name=document_name,
                    session_type=(document or SHELL_DOCUMENT)["sessionType"],
                    owner_arn=f"arn:aws:iam::{ACCOUNT}:user/tester",
                    owner_name="tester",
                    status=status,
                    parameters=parameters or {"command": ["sh"]},
                    document_content=document or SHELL_DOCUMENT,
                    run_as_user="",
                    node_id=node_id,
                    start_date=self.services.clock.now(),
                    idle_session_timeout=idle_minutes,
                    max_session_duration=max_minutes,
                )
            )

    async def add_token(
        self,
        kind: TokenKind | str,
        channel_id: str,
        *,
        token: str | None = None,
        principal_arn: str = f"arn:aws:iam::{ACCOUNT}:user/tester",
        ttl: float = 60,
    ) -> str:
        value = token or secrets.token_urlsafe(32)
        await channel_tokens.issue(
            self.engine,
            value,
            kind=TokenKind(kind),
            channel_id=channel_id,
            principal_arn=principal_arn,
            now=self.services.clock.now(),
            ttl=dt.timedelta(seconds=ttl),
        )
        return value

    async def session_row(self, session_id: str) -> SessionRow:
        row = await session_store.get(self.engine, session_id)
        assert row is not None
        return row

    async def wait_status(self, session_id: str, status: str, timeout: float = 10) -> SessionRow:
        async def reached() -> bool:
            return (await self.session_row(session_id)).status == status

        await wait_for(reached, timeout, f"session {session_id} never became {status}")
        return await self.session_row(session_id)

    # -- agent requests -------------------------------------------------------------------------------

    def signed_headers(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        key_id: str = AGENT_KEY_ID,
        secret: str = AGENT_SECRET,
        extra: dict[str, str] | None = None,
    ) -> dict[str, str]:
        headers = {"Host": self.host, **(extra or {})}
        added = sign_hmac(
            method,
            self.url(path),
            headers,
            body,
            access_key_id=key_id,
            secret_key=secret,
            session_token=None,
            region=REGION,
            service="ssmmessages",
        )
        return {**headers, **added}

    async def post_channel(self, path: str, **sign: Any) -> tuple[int, str]:
        """An agent's CreateControlChannel / CreateDataChannel call: (status, body)."""
        body = json.dumps({"MessageSchemaVersion": "1.0", "RequestId": str(uuid.uuid4())}).encode()
        headers = self.signed_headers("POST", path, body, extra={"Content-Type": "application/json"}, **sign)
        async with self.http.post(self.url(path), data=body, headers=headers) as response:
            return response.status, await response.text()

    async def channel_token(self, path: str, **sign: Any) -> str:
        status, text = await self.post_channel(path, **sign)
        assert status == 201, text
        match = re.search(r"<TokenValue>([^<]+)</TokenValue>", text)
        assert match is not None, text
        return match.group(1)

    async def agent_socket(
        self, path: str, *, autoping: bool = True, **sign: Any
    ) -> aiohttp.ClientWebSocketResponse:
        return await self.http.ws_connect(
            self.url(path), headers=self.signed_headers("GET", path, **sign), autoping=autoping
        )

    async def client_socket(self, session_id: str) -> aiohttp.ClientWebSocketResponse:
        return await self.http.ws_connect(self.url(f"/v1/data-channel/{session_id}?role=publish_subscribe"))


async def next_frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5) -> Frame:
    """The next binary frame; fails the test on close or timeout."""
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.BINARY, f"expected a binary frame, got {msg.type} {msg.data!r}"
    return decode(msg.data, verify_digest=True)


async def next_raw(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5) -> bytes:
    msg = await ws.receive(timeout=timeout)
    assert msg.type is aiohttp.WSMsgType.BINARY, f"expected a binary frame, got {msg.type} {msg.data!r}"
    return bytes(msg.data)


async def assert_closed(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5) -> None:
    """The server ends the socket (close frame or EOF) without sending more binary frames."""
    msg = await ws.receive(timeout=timeout)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING), (
        f"expected the socket to close, got {msg.type} {msg.data!r}"
    )


def drop(ws: aiohttp.ClientWebSocketResponse) -> None:
    """End the TCP connection without a close frame, as the real plugin and agent do."""
    connection = ws._response.connection  # aiohttp has no public abort for a client WebSocket
    assert connection is not None and connection.transport is not None
    connection.transport.abort()


async def assert_silent(ws: aiohttp.ClientWebSocketResponse, seconds: float = 0.3) -> None:
    with contextlib.suppress(TimeoutError):
        msg = await ws.receive(timeout=seconds)
        raise AssertionError(f"expected nothing, got {msg.type} {msg.data!r}")


def run_command_only(services: Services) -> Sequence[NodeExtension]:
    return (RunCommandJobs(services),)


@contextlib.asynccontextmanager
async def running_gateway(
    tmp_path: pathlib.Path,
    *,
    settings: GatewaySettings | None = None,
    extensions: Callable[[Services], Sequence[NodeExtension]] = run_command_only,
    bus: Bus | None = None,
    cipher: SecretCipher | None = None,
    node_id: str = NODE_ID,
    clock: Clock = SYSTEM_CLOCK,
    database_url: str | None = None,
    **config: Any,
) -> AsyncIterator[Gateway]:
    """A gateway node with the extensions ``extensions(services)`` gives (by default Run Command's,
    as the server has; not the recorder); several may share one data directory (database), bus and
    cipher. With a :class:`ManualClock` its time (tokens, heartbeat, sweeper, session ends) moves
    only when told. ``database_url``: another database than SQLite in ``tmp_path`` (an empty one: it
    is migrated), with the pool of ``config``'s ``database_pool``."""
    server_config = ServerConfig(
        data_dir=tmp_path, region=REGION, account_id=ACCOUNT, node_id=node_id, **config
    )
    engine = make_engine(database_url or database_url_for(tmp_path), server_config.database_pool)
    await migrate(engine)
    services = Services(
        config=server_config,
        engine=engine,
        bus=bus or InProcessBus(),
        cipher=cipher or SecretCipher.generate(),
        clock=clock,
    )
    app = web.Application()
    node = install(app, services, settings=settings, extensions=extensions(services))
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Gateway(services, node, server, http)
    finally:
        await server.close()
        await engine.dispose()
