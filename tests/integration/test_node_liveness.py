"""Node liveness on the database's time: nodes whose clocks disagree still agree on who is alive,
a silent node is dead within the blind spot (NODE_ALIVE_WINDOW), and a node is always alive to
itself (a heartbeat write that an overloaded machine made late does not make it refuse its agents)."""

from __future__ import annotations

import datetime as dt
import json
import pathlib

import sqlalchemy as sa
from tests.support.inprocess_api import running_api

from openssm.store import gateway_nodes, instances
from openssm.store.db import database_url_for, make_engine, migrate
from openssm.store.tables import gateway_nodes as gateway_nodes_table

MINE, THEIRS = "mi-00000000000000001", "mi-00000000000000002"


async def test_a_node_with_a_wrong_clock_is_alive_on_the_shared_database(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        await migrate(engine)
        now = dt.datetime.now(dt.UTC)
        await gateway_nodes.announce(engine, "right", "http://right", now=now)
        # Its heartbeat is stamped with the database's time, not its own (an hour behind).
        await gateway_nodes.heartbeat(engine, "wrong", "http://wrong", now, now=now - dt.timedelta(hours=1))
        assert set(await gateway_nodes.alive(engine, now=now, own_node="reader")) == {"right", "wrong"}
        # Judged on the database's time too: a reader whose clock runs ahead sees them alive.
        ahead = now + dt.timedelta(minutes=5)
        assert set(await gateway_nodes.alive(engine, now=ahead, own_node="reader")) == {"right", "wrong"}
        row = await gateway_nodes.get(engine, "wrong")
        assert row is not None and abs(row.last_seen_at - now) < dt.timedelta(minutes=1)
    finally:
        await engine.dispose()


async def test_a_silent_node_is_dead_within_the_blind_spot(tmp_path: pathlib.Path) -> None:
    assert gateway_nodes.NODE_ALIVE_WINDOW <= dt.timedelta(seconds=10)
    engine = make_engine(database_url_for(tmp_path))  # SQLite: one process, the server's clock
    try:
        await migrate(engine)
        now = dt.datetime.now(dt.UTC)
        await gateway_nodes.announce(engine, "node", "http://node", now=now)
        assert "node" in await gateway_nodes.alive(
            engine, now=now + dt.timedelta(seconds=9), own_node="other"
        )
        later = now + gateway_nodes.NODE_ALIVE_WINDOW
        assert "node" not in await gateway_nodes.alive(engine, now=later, own_node="other")
        # To itself it is alive: it is the one asking, however late its heartbeat.
        assert await gateway_nodes.alive(engine, now=later, own_node="node") == {"node": "http://node"}
    finally:
        await engine.dispose()


async def test_a_node_whose_heartbeat_is_late_still_serves_its_own_agents(
    tmp_path: pathlib.Path, database_url: str
) -> None:
    """Both nodes' heartbeats are stale past the window: the node answering sees itself and its agents
    alive (Online, connected, StartSession and ResumeSession point at it), the other node dead."""
    async with running_api(tmp_path, database_url=database_url, public_url="http://me:8080") as api:
        engine, now = api.services.engine, api.clock.now()
        me = api.services.config.node_id
        await gateway_nodes.announce(engine, me, "http://me:8080", now=now)
        await gateway_nodes.announce(engine, "other", "http://other:8080", now=now)
        # A minute silent on the server's clock (SQLite) and on the database's (PostgreSQL).
        stale = min(now, dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=1)
        async with engine.begin() as conn:
            await conn.execute(sa.update(gateway_nodes_table).values(last_seen_at=stale))
        for instance_id, node_id in ((MINE, me), (THEIRS, "other")):
            assert await instances.join(engine, instance_id, iam_role=None, now=now)
            await instances.set_control_node(engine, instance_id, node_id, now=now)
        assert await gateway_nodes.alive(engine, now=now, own_node=me) == {me: "http://me:8080"}
        user = await api.user(
            "alice",
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}]},
        )

        listing = await api.ssm("DescribeInstanceInformation", {}, user)
        assert listing.status == 200, listing.text
        statuses = {
            item["InstanceId"]: item["PingStatus"]
            for item in json.loads(listing.text)["InstanceInformationList"]
        }
        assert statuses == {MINE: "Online", THEIRS: "ConnectionLost"}
        online = await api.ssm(
            "DescribeInstanceInformation", {"Filters": [{"Key": "PingStatus", "Values": ["Online"]}]}, user
        )
        assert [item["InstanceId"] for item in json.loads(online.text)["InstanceInformationList"]] == [MINE]
        for target, status in ((MINE, "connected"), (THEIRS, "notconnected")):
            reply = await api.ssm("GetConnectionStatus", {"Target": target}, user)
            assert json.loads(reply.text)["Status"] == status

        started = await api.ssm("StartSession", {"Target": MINE}, user)
        assert started.status == 200, started.text
        session_id = json.loads(started.text)["SessionId"]
        assert json.loads(started.text)["StreamUrl"].startswith("ws://me:8080/v1/data-channel/")
        refused = await api.ssm("StartSession", {"Target": THEIRS}, user)
        assert (refused.status, refused.code) == (400, "TargetNotConnected")
        resumed = await api.ssm("ResumeSession", {"SessionId": session_id}, user)
        assert resumed.status == 200, resumed.text
        assert json.loads(resumed.text)["StreamUrl"].startswith("ws://me:8080/v1/data-channel/")
