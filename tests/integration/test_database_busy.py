"""A node whose PostgreSQL connections are all in use slows its callers down, never fails them: a
request that waited the pool's whole wait for a connection is answered with AWS's
ThrottlingException (HTTP 400 on the API, 429 on the message gateway), which agents and SDKs back
off from and retry, and what was answered as done is stored. A registration wave once got HTTP 500s
when SQLAlchemy's pool timed out after 30 s."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import pathlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy.engine import make_url
from tests.support import postgres
from tests.support.gateway import assert_silent, running_gateway
from tests.support.inprocess_api import running_api
from tests.support.wait import wait_for
from tests.unit.gateway.test_gateway_jobs import INSTANCE_ID, command_row

from openssm.gateway.jobs import RunCommandJobs
from openssm.protocol import run_command as rc
from openssm.protocol.messages import ClientOpen
from openssm.server.admission import Admission
from openssm.store import commands, gateway_nodes, instances
from openssm.store.db import DatabaseBusy, PoolSettings, make_engine, migrate, patiently
from openssm.store.instances import PingBuffer
from openssm.store.tables import command_invocations, sessions

TARGET = "mi-0123456789abcdef0"
# One connection and a short wait: far fewer than the requests made at once.
TINY = PoolSettings(size=1, overflow=0, timeout=0.05)
WAVE = 60


async def test_a_wave_larger_than_the_pool_is_throttled_and_what_was_answered_is_stored(
    tmp_path: pathlib.Path, postgres_url: str
) -> None:
    async with running_api(tmp_path, database_url=postgres_url, database_pool=TINY) as api:
        engine, now = api.services.engine, api.clock.now()
        await gateway_nodes.announce(engine, api.services.config.node_id, "http://node:8080", now=now)
        assert await instances.join(engine, TARGET, iam_role=None, now=now)
        await instances.set_control_node(engine, TARGET, api.services.config.node_id, now=now)
        allow = {"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*"}
        user = await api.user("alice", {"Version": "2012-10-17", "Statement": [allow]})

        replies = await asyncio.gather(
            *(api.ssm("StartSession", {"Target": TARGET}, user) for _ in range(WAVE))
        )

        answers = [(reply.status, reply.code if reply.status != 200 else "") for reply in replies]
        assert set(answers) <= {(200, ""), (400, "ThrottlingException")}, answers
        started = {json.loads(reply.text)["SessionId"] for reply in replies if reply.status == 200}
        assert started, "nothing got through"
        assert len(started) < WAVE, "the pool was never exhausted: the test tests nothing"
        async with engine.connect() as conn:
            stored = set((await conn.execute(sa.select(sessions.c.session_id))).scalars())
        assert started <= stored


async def test_the_message_gateway_throttles_a_request_that_found_no_connection(postgres_url: str) -> None:
    """Behind the admission middleware (the real server's first), a request or a WebSocket upgrade
    whose handler found no connection is answered 429 ThrottlingException, not 500."""
    engine = make_engine(postgres_url, TINY)
    try:
        await migrate(engine)

        async def query() -> None:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))

        async def post(_: web.Request) -> web.StreamResponse:
            await query()
            return web.Response(text="ok")

        async def upgrade(request: web.Request) -> web.StreamResponse:
            await query()  # authentication, before the upgrade
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await ws.close()
            return ws

        admission = Admission(limit=100, ceiling=200)
        app = web.Application(middlewares=[admission.middleware])
        app.router.add_post("/v1/control-channel/{instance}", post)
        app.router.add_get("/v1/control-channel/{instance}", upgrade)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        url = str(server.make_url("/v1/control-channel/mi-0"))
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(url) as served:
                    assert served.status == 200
                async with http.ws_connect(url) as ws:
                    await ws.receive()
                async with engine.connect():  # the pool's only connection, held
                    async with http.post(url) as busy:
                        assert busy.status == 429 and "<ThrottlingException>" in await busy.text()
                    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                        await http.ws_connect(url)
                    assert refused.value.status == 429
        finally:
            await server.close()
        assert admission.refused == 2 and admission.in_flight == 0
    finally:
        await engine.dispose()


async def test_a_data_channel_open_that_found_no_connection_is_told_to_dial_again(
    tmp_path: pathlib.Path, postgres_url: str
) -> None:
    """A client (or agent) whose data-channel open found every connection in use gets close code 1013
    (try again later) with no ``channel_closed``, so it dials again as after a network cut, and its
    token is not used up: the same open goes through once the pool has a connection."""
    async with running_gateway(tmp_path, database_url=postgres_url, database_pool=TINY) as gw:
        session_id = "tester-00000000000000001"
        await gw.add_session(session_id, TARGET)
        token = await gw.add_token("client", session_id)
        async with gw.engine.connect():  # the pool's only connection, held
            ws = await gw.client_socket(session_id)
            await ws.send_str(ClientOpen(token_value=token).to_text())
            closed = await ws.receive(timeout=10)
            assert closed.type is aiohttp.WSMsgType.CLOSE, closed
            assert (closed.data, closed.extra) == (aiohttp.WSCloseCode.TRY_AGAIN_LATER, "Rate exceeded")
        ws = await gw.client_socket(session_id)
        await ws.send_str(ClientOpen(token_value=token).to_text())
        await assert_silent(ws)  # a used-up token would have been refused with channel_closed
        await ws.close()


async def test_buffered_reports_wait_out_a_busy_database(postgres_url: str) -> None:
    """UpdateInstanceInformation's steady reports were answered before they are written: a batch
    that found no connection is kept for the next one, not dropped."""
    engine, reader = make_engine(postgres_url, TINY), make_engine(postgres_url)
    try:
        await migrate(engine)
        now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
        assert await instances.join(engine, TARGET, iam_role=None, now=now)
        pinged = now + dt.timedelta(minutes=1)

        async def last_ping() -> dt.datetime | None:
            row = await instances.get(reader, TARGET)
            return row.last_ping_at if row is not None else None

        pings = PingBuffer(delay=0.01)
        async with engine.connect():  # the pool's only connection, held while the batch is due
            pings.add(engine, TARGET, pinged)
            await pings.written()  # found no connection
            assert await last_ping() is None
        await wait_for(lambda: _equals(last_ping, pinged), 10, "the report waiting for a connection was lost")
    finally:
        await engine.dispose()
        await reader.dispose()


async def _equals(read: Callable[[], Awaitable[object]], expected: object) -> bool:
    return await read() == expected


async def test_background_writes_wait_out_a_busy_database(postgres_url: str) -> None:
    """What nobody retries (a closed control channel's row, the node's heartbeat) tries again while
    the pool is busy, where a request is throttled at once."""
    engine = make_engine(postgres_url, TINY)
    try:
        await migrate(engine)
        now = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
        assert await instances.join(engine, TARGET, iam_role=None, now=now)
        await instances.set_control_node(engine, TARGET, "node-1", now=now)

        def clear() -> Awaitable[None]:
            return instances.clear_control_node(engine, TARGET, "node-1")

        async with engine.connect():  # the pool's only connection, held
            with pytest.raises(DatabaseBusy):
                await patiently(clear, "a test", attempts=1)
            clearing = asyncio.create_task(patiently(clear, "a test", attempts=100))
            await asyncio.sleep(TINY.timeout * 3)  # it has waited out the pool more than once
            assert not clearing.done()
        await clearing
        row = await instances.get(engine, TARGET)
        assert row is not None and row.control_node_id is None
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def _role_with_room_for(postgres_url: str, connections: int) -> AsyncIterator[str]:
    """A login role PostgreSQL lets hold at most ``connections`` connections at once (its CONNECTION
    LIMIT: refused past it with SQLSTATE 53300, as when the server is at max_connections); yields
    ``postgres_url`` as that role."""
    role = f"openssm_limited_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(postgres.POSTGRES_URL, timeout=10)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT {connections}')
        try:
            yield make_url(postgres_url).set(username=role).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP ROLE "{role}"')
    finally:
        await admin.close()


async def test_a_connection_postgres_refuses_for_lack_of_room_is_busy_not_an_error(postgres_url: str) -> None:
    """Several nodes' pools may together ask for more connections than the server allows
    (max_connections): "too many clients" is the database being busy (throttled, retried), where a
    3-node cluster's wave of 3,000 agents got HTTP 500s."""
    async with _role_with_room_for(postgres_url, 1) as url:
        engine = make_engine(url, PoolSettings(size=2, overflow=0, timeout=5))
        try:
            async with engine.connect() as held:
                assert (await held.execute(sa.text("SELECT 1"))).scalar_one() == 1
                with pytest.raises(DatabaseBusy):
                    async with engine.connect() as refused:
                        await refused.execute(sa.text("SELECT 1"))
            async with engine.connect() as conn:  # room again: served as ever
                assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
        finally:
            await engine.dispose()
        # Not every refusal is busyness: a database that is not there stays an error.
        missing = make_engine(make_url(url).set(database="openssm_no_such_database").render_as_string(False))
        try:
            with pytest.raises(sa.exc.DBAPIError) as error:
                async with missing.connect():
                    pass
            assert not isinstance(error.value, DatabaseBusy)
        finally:
            await missing.dispose()


class _Host:
    """The gateway node as Run Command's extension sees it: what it sends down control channels."""

    node_id = "node-1"

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def live_session(self, session_id: str) -> None:
        return None

    async def send_control(self, instance_id: str, data: bytes) -> bool:
        self.sent.append((instance_id, data))
        return True

    def background(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return asyncio.create_task(coroutine, name=name)


async def test_a_control_channel_opening_in_a_busy_moment_still_gets_what_it_is_owed(
    tmp_path: pathlib.Path, postgres_url: str
) -> None:
    """Nobody retries what a control channel that just opened is owed (a cancel it missed while
    away, here): its reads wait out a busy pool instead of dropping it (a wave of reconnecting
    agents once made one miss it)."""
    async with running_api(tmp_path, database_url=postgres_url, database_pool=TINY) as api:
        engine = api.services.engine
        command = dataclasses.replace(command_row(), instance_ids=[INSTANCE_ID])
        await commands.create(
            engine, command, [commands.pending_invocation(command.command_id, INSTANCE_ID, INSTANCE_ID)]
        )
        async with engine.begin() as conn:
            await conn.execute(sa.update(command_invocations).values(status=rc.CANCELLING))
        jobs, host = RunCommandJobs(api.services), _Host()
        await jobs.start(host)
        async with engine.connect():  # the pool's only connection, held
            opened = asyncio.create_task(jobs.on_control_opened(INSTANCE_ID))
            done, _ = await asyncio.wait({opened}, timeout=TINY.timeout * 4)
            assert not done, "the reads gave up (or never waited) while the database was busy"
        await asyncio.wait_for(opened, 10)
        assert [instance for instance, _ in host.sent] == [INSTANCE_ID]
