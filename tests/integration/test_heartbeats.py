"""UpdateInstanceInformation in a fleet's steady state: a report that changes nothing but the time is
not a transaction of its own (its time is written with others' within ``PingBuffer.delay``), a
report that changes a field is written at once, and PingStatus stays right throughout."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import pathlib
import time

import sqlalchemy as sa
from tests.support.inprocess_api import Api, Credentials, running_api
from tests.support.wait import wait_for

from openssm.store import gateway_nodes, instances
from openssm.store.tables import instances as instances_table

NODE = "i-0123456789abcdef0"
REPORT = {
    "InstanceId": NODE,
    "AgentName": "amazon-ssm-agent",
    "AgentVersion": "3.3.1",
    "ComputerName": "web-1",
    "IPAddress": "10.0.0.7",
    "PlatformName": "Ubuntu",
    "PlatformType": "Linux",
    "PlatformVersion": "24.04",
    "AgentStatus": "Active",
}
ALLOW_ALL = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


async def _described(api: Api, credentials: Credentials) -> dict[str, object]:
    reply = await api.ssm("DescribeInstanceInformation", {}, credentials)
    (node,) = json.loads(reply.text)["InstanceInformationList"]
    return dict(node)


async def _stored_ping(api: Api) -> dt.datetime | None:
    row = await instances.get(api.services.engine, NODE)
    assert row is not None
    return row.last_ping_at


async def test_unchanged_reports_are_batched_and_changes_written_at_once(tmp_path: pathlib.Path) -> None:
    async with running_api(tmp_path) as api:
        admin = await api.user("admin", ALLOW_ALL)
        statements: list[str] = []
        sa.event.listen(
            api.services.engine.sync_engine,
            "before_cursor_execute",
            lambda _conn, _cursor, statement, *_: statements.append(statement),
        )
        first = api.clock.now()
        assert (await api.ssm("UpdateInstanceInformation", REPORT, admin)).status == 200  # joins the node
        node = await _described(api, admin)
        assert node["AgentVersion"] == "3.3.1" and node["ComputerName"] == "web-1"
        assert node["LastPingDateTime"] == first.timestamp()
        assert node["PingStatus"] == "ConnectionLost"

        api.clock.advance(300)
        later = api.clock.now()
        await gateway_nodes.announce(api.services.engine, api.services.config.node_id, "http://x", now=later)
        await instances.set_control_node(api.services.engine, NODE, api.services.config.node_id, now=later)
        statements.clear()
        assert (await api.ssm("UpdateInstanceInformation", REPORT, admin)).status == 200
        assert not [s for s in statements if s.lstrip().upper().startswith("UPDATE INSTANCES")]
        assert await _stored_ping(api) == first  # buffered, not yet written
        assert (await _described(api, admin))["PingStatus"] == "Online"
        deadline = time.monotonic() + api.services.pings.delay + 10
        while await _stored_ping(api) != later:
            assert time.monotonic() < deadline, "the buffered ping time was never written"
            await api.services.pings.written()
        assert (await _described(api, admin))["LastPingDateTime"] == later.timestamp()

        api.clock.advance(5)
        upgraded = {**REPORT, "AgentVersion": "3.3.2"}
        assert (await api.ssm("UpdateInstanceInformation", upgraded, admin)).status == 200
        node = await _described(api, admin)  # at once: a change is not buffered
        assert node["AgentVersion"] == "3.3.2" and node["LastPingDateTime"] == api.clock.now().timestamp()
        assert node["PingStatus"] == "Online"


async def test_many_nodes_pings_are_one_transaction(tmp_path: pathlib.Path) -> None:
    async with running_api(tmp_path) as api:
        engine, now = api.services.engine, api.clock.now()
        ids = [f"i-{index:017x}" for index in range(300)]
        for instance_id in ids:
            assert await instances.join(engine, instance_id, iam_role=None, now=now)
        buffer = instances.PingBuffer(delay=3600)  # written only when flushed
        later = now + dt.timedelta(minutes=5)
        for instance_id in ids[:200]:
            buffer.add(engine, instance_id, later)
        statements: list[str] = []
        sa.event.listen(
            engine.sync_engine,
            "before_cursor_execute",
            lambda _c, _cur, statement, *_: statements.append(statement),
        )
        await buffer.flush(engine)
        assert len([s for s in statements if s.lstrip().upper().startswith("UPDATE")]) == 1
        async with engine.connect() as conn:
            rows = (
                await conn.execute(sa.select(instances_table.c.instance_id, instances_table.c.last_ping_at))
            ).all()
        pinged = {
            instance_id for instance_id, at in rows if at is not None and at.replace(tzinfo=dt.UTC) == later
        }
        assert pinged == set(ids[:200])


async def test_written_waits_for_a_batch_that_is_being_written(tmp_path: pathlib.Path) -> None:
    """``written()`` called once the batching window is over but before the batch's transaction
    has committed waits for it (it used to return at once, mid-flush)."""
    async with running_api(tmp_path) as api:
        engine, now = api.services.engine, api.clock.now()
        assert await instances.join(engine, NODE, iam_role=None, now=now)
        updates: list[str] = []
        sa.event.listen(
            engine.sync_engine,
            "before_cursor_execute",
            lambda _c, _cur, statement, *_: updates.append(statement) if "UPDATE" in statement else None,
        )
        buffer = instances.PingBuffer(delay=0.01)
        later = now + dt.timedelta(minutes=5)
        async with engine.begin() as holder:  # SQLite's write lock, held: the batch's UPDATE waits
            await holder.execute(sa.text("UPDATE instances SET tags = tags"))
            updates.clear()
            buffer.add(engine, NODE, later)
            await wait_for(lambda: bool(updates), 5, "the batch was never written")
            waiting = asyncio.create_task(buffer.written())
            done, _ = await asyncio.wait({waiting}, timeout=0.3)
            assert not done, "written() returned while the batch was still being written"
        await waiting
        assert await _stored_ping(api) == later


async def test_a_graceful_stop_writes_the_batch_without_waiting_out_its_window(
    tmp_path: pathlib.Path,
) -> None:
    async with running_api(tmp_path) as api:
        engine, now = api.services.engine, api.clock.now()
        assert await instances.join(engine, NODE, iam_role=None, now=now)
        buffer = instances.PingBuffer(delay=3600)
        later = now + dt.timedelta(minutes=5)
        buffer.add(engine, NODE, later)
        await asyncio.wait_for(buffer.close(engine), 10)
        assert await _stored_ping(api) == later
