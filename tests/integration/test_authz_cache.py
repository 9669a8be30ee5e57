"""A node keeps credentials, principals and policies between requests (``Services.authz``), valid for
one authorisation generation (``openssm.store.authz_generation``). Whatever changes a decision — a
policy detached, changed or put, a group joined, a key deactivated, a node deregistered — takes
effect on the very next call when made on this node (through the API or straight through the
store), and within the poll interval when made elsewhere (another node, or SQL from outside). On
SQLite and on PostgreSQL (the triggers are the database's own)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import pathlib
import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import make_url
from tests.support import postgres
from tests.support.inprocess_api import ACCOUNT, Api, Credentials, running_api

from openssm.store import access_keys, audit_log, authz_generation, instances
from openssm.store.audit_log import AuditQuery
from openssm.store.db import make_engine, migrate
from openssm.store.iam import groups, holder_policies, policies, roles

NODE = "i-0123456789abcdef0"
MANAGED = "mi-0123456789abcdef0"
REPORT = {"AgentName": "amazon-ssm-agent", "AgentVersion": "3.3.1", "PlatformType": "Linux"}
ALLOW = {"Statement": [{"Effect": "Allow", "Action": "ssm:UpdateInstanceInformation", "Resource": "*"}]}
DENY = {"Statement": [{"Effect": "Deny", "Action": "ssm:UpdateInstanceInformation", "Resource": "*"}]}
TRUST_SSM = json.dumps(
    {
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
    }
)


def _from_outside(database_url: str, statement: str) -> None:
    """SQL run past this process's engines (as another node, or an operator's psql, would)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        with sqlite3.connect(url.database) as connection:
            connection.execute(statement)
        return
    postgres.fetch_value(
        database_url, f"WITH changed AS ({statement} RETURNING 1) SELECT count(*) FROM changed"
    )


async def _report(api: Api, credentials: Credentials, instance_id: str = NODE) -> str:
    reply = await api.ssm("UpdateInstanceInformation", {"InstanceId": instance_id, **REPORT}, credentials)
    return "ok" if reply.status == 200 else reply.code


async def test_changes_made_on_this_node_decide_the_next_call(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    async with running_api(tmp_path, database_url=database_url) as api:
        engine, now = api.services.engine, api.clock.now()
        admin = await api.user("admin", {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
        agent = await api.user("agent", ALLOW)
        assert await _report(api, agent) == "ok"  # joins the node
        assert await _report(api, agent) == "ok"
        assert len(api.services.authz.credentials) == 1 and len(api.services.authz.policies) == 1

        await holder_policies.put_inline(engine, "user", "agent", "test", json.dumps(DENY))
        assert await _report(api, agent) == "AccessDeniedException"
        await holder_policies.put_inline(engine, "user", "agent", "test", json.dumps(ALLOW))
        assert await _report(api, agent) == "ok"

        deny = await policies.create(engine, ACCOUNT, "deny", "/", None, json.dumps(DENY), now)
        await groups.create(engine, ACCOUNT, "quarantined", "/", now)
        await holder_policies.attach(engine, "group", "quarantined", deny.arn)
        assert await _report(api, agent) == "ok"
        await groups.add_user(engine, "quarantined", "agent")
        assert await _report(api, agent) == "AccessDeniedException"
        await groups.remove_user(engine, "quarantined", "agent")
        assert await _report(api, agent) == "ok"

        await holder_policies.attach(engine, "user", "agent", deny.arn)
        assert await _report(api, agent) == "AccessDeniedException"
        await policies.create_version(engine, deny.arn, json.dumps(ALLOW), True, now)
        assert await _report(api, agent) == "ok"
        await holder_policies.detach(engine, "user", "agent", deny.arn)

        # through the API (IAM's Query protocol), as an administrator would
        form = {"Action": "DeleteUserPolicy", "UserName": "agent", "PolicyName": "test"}
        assert (await api.query("iam", form, admin)).status == 200
        assert await _report(api, agent) == "AccessDeniedException"
        document = json.dumps(ALLOW)
        form = {
            "Action": "PutUserPolicy",
            "UserName": "agent",
            "PolicyName": "test",
            "PolicyDocument": document,
        }
        assert (await api.query("iam", form, admin)).status == 200
        assert await _report(api, agent) == "ok"

        await access_keys.set_user_key_status(engine, "agent", agent[0], "Inactive")
        assert await _report(api, agent) == "UnrecognizedClientException"
        await access_keys.set_user_key_status(engine, "agent", agent[0], "Active")
        assert await _report(api, agent) == "ok"
        await access_keys.delete_user_key(engine, "agent", agent[0])
        assert await _report(api, agent) == "UnrecognizedClientException"


async def test_role_credentials_follow_the_role_and_the_node(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    async with running_api(tmp_path, database_url=database_url) as api:
        engine, cipher, now = api.services.engine, api.services.cipher, api.clock.now()
        await roles.create(engine, ACCOUNT, "agents", "/", TRUST_SSM, None, {}, now)
        await holder_policies.put_inline(engine, "role", "agents", "heartbeat", json.dumps(ALLOW))
        await instances.register(
            engine, instance_id=MANAGED, activation_id="a", iam_role="agents", name=None, public_key="",
            fingerprint="f", tags={}, now=now,
        )  # fmt: skip

        async def role_credentials() -> Credentials:
            issued = await access_keys.create_temporary(
                engine, cipher, principal_type="managed-instance", principal_name=MANAGED,
                role_name="agents", now=api.clock.now(), lifetime=dt.timedelta(hours=1),
            )  # fmt: skip
            assert issued.session_token is not None
            return issued.access_key_id, issued.secret_access_key, issued.session_token

        first = await role_credentials()
        assert await _report(api, first, MANAGED) == "ok"
        assert await _report(api, first, MANAGED) == "ok"
        await holder_policies.delete_inline(engine, "role", "agents", "heartbeat")
        assert await _report(api, first, MANAGED) == "AccessDeniedException"
        await holder_policies.put_inline(engine, "role", "agents", "heartbeat", json.dumps(ALLOW))
        assert await _report(api, first, MANAGED) == "ok"

        # An hour on, the agent fetches new credentials: the expired ones are swept, and that
        # changes no decision, so no node's caches start over.
        api.clock.advance(3600 + 1)
        assert await _report(api, first, MANAGED) == "ExpiredTokenException"
        before = await authz_generation.read(engine)
        second = await role_credentials()
        assert await authz_generation.read(engine) == before
        assert await access_keys.find(engine, first[0]) is None
        assert await _report(api, second, MANAGED) == "ok"

        await instances.deregister(engine, MANAGED)
        assert await authz_generation.read(engine) > before
        assert await _report(api, second, MANAGED) == "UnrecognizedClientException"


async def test_changes_made_elsewhere_count_within_the_poll_interval(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    async with running_api(tmp_path, database_url=database_url) as api:
        agent = await api.user("agent", ALLOW)
        assert await _report(api, agent) == "ok"  # joins the node
        assert await _report(api, agent) == "ok"
        _from_outside(database_url, "DELETE FROM iam_inline_policies WHERE principal_name = 'agent'")
        assert await _report(api, agent) == "ok"  # within the bound: this node has not looked yet
        api.clock.advance(authz_generation.POLL_SECONDS)
        assert await _report(api, agent) == "AccessDeniedException"


async def test_steady_heartbeats_are_audited_with_their_batch_and_denials_at_once(
    tmp_path: pathlib.Path,
) -> None:
    async with running_api(tmp_path) as api:
        engine = api.services.engine
        agent = await api.user("agent", ALLOW)
        assert await _report(api, agent) == "ok"
        await api.services.pings.written()
        query = AuditQuery(event_name="UpdateInstanceInformation", limit=100)
        counted = len(await audit_log.lookup(engine, query))
        assert await _report(api, agent) == "ok"  # steady: buffered, its audit row with it
        assert len(await audit_log.lookup(engine, query)) == counted
        await api.services.pings.flush(engine)
        assert len(await audit_log.lookup(engine, query)) == counted + 1

        await holder_policies.put_inline(engine, "user", "agent", "test", json.dumps(DENY))
        assert await _report(api, agent) == "AccessDeniedException"
        (denied, *_) = await audit_log.lookup(engine, query)
        assert denied.decision == "explicitDeny"


async def test_what_a_fleet_does_all_day_changes_no_generation(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    """Heartbeats, control channels coming and going, keys used and minted: none of it can change a
    decision, so none of it may empty every node's caches (nor make this node read the counter)."""
    async with running_api(tmp_path, database_url=database_url) as api:
        engine, now = api.services.engine, api.clock.now()
        agent = await api.user("agent", ALLOW)
        before, writes = await authz_generation.read(engine), authz_generation.committed_writes()
        assert await instances.join(engine, NODE, iam_role=None, now=now)
        await instances.record_pings(
            engine, {NODE: instances.Ping(now, instances.InstanceInfo(agent_version="3"))}
        )
        await instances.set_control_node(engine, NODE, "node-1", now=now)
        await instances.clear_control_node(engine, NODE, "node-1")
        await access_keys.touch(engine, agent[0], "ssm", now)
        await access_keys.create_temporary(
            engine, api.services.cipher, principal_type="managed-instance", principal_name=NODE,
            role_name=None, now=now, lifetime=dt.timedelta(hours=1),
        )  # fmt: skip
        assert await authz_generation.read(engine) == before
        assert authz_generation.committed_writes() == writes


async def test_callers_that_find_the_generation_stale_together_share_one_read(database_url: str) -> None:
    """A wave of requests (a killed node's agents coming over) finding the counter due for a read
    at once: one read, which all of them wait for, not one each (a write this process commits still
    gets a read of its own: test_changes_made_on_this_node_decide_the_next_call)."""
    engine = make_engine(database_url)
    try:
        await migrate(engine)
        reads: list[str] = []

        def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
            if "FROM authz_generation" in statement:
                reads.append(statement)

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        generation = authz_generation.Generation(poll_seconds=1.0)
        wave = 20

        values = await asyncio.gather(*(generation.current(engine, 100.0) for _ in range(wave)))
        assert len(set(values)) == 1 and len(reads) == 1
        await asyncio.gather(*(generation.current(engine, 100.5) for _ in range(wave)))
        assert len(reads) == 1  # within the poll interval: no read at all
        await asyncio.gather(*(generation.current(engine, 101.5) for _ in range(wave)))
        assert len(reads) == 2  # past it: one more
    finally:
        await engine.dispose()
