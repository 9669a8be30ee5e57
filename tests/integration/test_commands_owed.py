"""What a control channel opening may be owed (``store.commands.owes_instance``): one look-up that
lets the many agents owed nothing (a killed node's fleet coming over) skip the three queries that
find the jobs, cancels and waiting commands of the few that are."""

from __future__ import annotations

import dataclasses
import pathlib

import sqlalchemy as sa
from tests.unit.gateway.test_gateway_jobs import INSTANCE_ID, command_row

from openssm.protocol import run_command as rc
from openssm.store import commands
from openssm.store.db import database_url_for, make_engine, migrate
from openssm.store.tables import command_invocations

OTHER = "mi-0fedcba9876543210"


async def test_an_instance_is_owed_its_pending_and_cancelling_invocations_only(
    tmp_path: pathlib.Path,
) -> None:
    engine = make_engine(database_url_for(tmp_path))
    try:
        await migrate(engine)
        command = dataclasses.replace(command_row(), instance_ids=[INSTANCE_ID, OTHER])
        await commands.create(
            engine,
            command,
            [commands.pending_invocation(command.command_id, node, node) for node in (INSTANCE_ID, OTHER)],
        )
        assert await commands.owes_instance(engine, INSTANCE_ID)  # pending, not sent yet
        assert not await commands.owes_instance(engine, "mi-00000000000000000")

        async def set_status(status: str) -> None:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.update(command_invocations)
                    .where(command_invocations.c.instance_id == INSTANCE_ID)
                    .values(status=status)
                )

        await set_status(rc.IN_PROGRESS)  # delivered and running: nothing to send it again
        assert not await commands.owes_instance(engine, INSTANCE_ID)
        assert await commands.owes_instance(engine, OTHER)
        await set_status(rc.CANCELLING)  # a cancel it may have missed while away
        assert await commands.owes_instance(engine, INSTANCE_ID)
        await set_status(rc.SUCCESS)
        assert not await commands.owes_instance(engine, INSTANCE_ID)
    finally:
        await engine.dispose()
