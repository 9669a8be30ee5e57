"""The gateway's figures through the node extension hooks, on a real gateway node: control channels
opened, replaced and closed; a session's type and the bytes relayed while it runs and after it ends."""

from __future__ import annotations

import pathlib

from tests.integration.test_gateway_sessions import (
    FAST,
    IID,
    SID,
    keystroke,
    open_control,
    output,
    start,
)
from tests.support.gateway import NODE_ID, assert_closed, running_gateway, wait_for

from openssm.gateway.jobs import RunCommandJobs
from openssm.gateway.metrics import GatewayMetrics
from openssm.ops.metrics import Metrics


async def test_agents_sessions_and_bytes_are_counted_through_the_hooks(tmp_path: pathlib.Path) -> None:
    metrics = Metrics()
    figures = GatewayMetrics(metrics)
    async with running_gateway(
        tmp_path, settings=FAST, extensions=lambda services: [RunCommandJobs(services), figures]
    ) as gw:
        await gw.add_instance(IID)
        await gw.add_agent_user()
        assert b"openssm_agents_connected 0.0" in await metrics.render()

        first = await open_control(gw)
        await wait_for(lambda: figures.agents_connected() == 1, 5, "the control channel counted")
        second = await open_control(gw)  # the agent re-dials: the old channel is replaced, not lost
        await assert_closed(first)
        assert figures.agents_connected() == 1
        await second.close()
        await wait_for(lambda: figures.agents_connected() == 0, 5, "the closed channel uncounted")

        s = await start(gw)  # the harness's session runs AWS-StartInteractiveCommand: type "command"
        await wait_for(lambda: figures.sessions_active() == {"command": 1}, 5, "the session counted")
        for seq in range(3):
            await s.agent.send_bytes(output(seq, b"x" * 1000).encode())
        await s.client.send_bytes(keystroke(0, b"ls\r").encode())
        await wait_for(
            lambda: figures.relayed_bytes() == {"client_to_agent": 3, "agent_to_client": 3000},
            5,
            "bytes counted",
        )
        rendered = (await metrics.render()).decode()
        assert 'openssm_relayed_bytes_total{direction="agent_to_client"} 3000.0' in rendered
        assert 'openssm_sessions_active{type="command"} 1.0' in rendered

        await gw.services.bus.publish(
            f"node.{NODE_ID}", {"type": "terminate", "session_id": SID, "reason": "done"}
        )
        await wait_for(lambda: figures.sessions_active() == {}, 5, "the session uncounted")
        assert figures.relayed_bytes() == {
            "client_to_agent": 3,
            "agent_to_client": 3000,
        }  # a counter keeps them
    assert b"openssm_agents_connected" not in await metrics.render()  # the node stopped: its figures went
