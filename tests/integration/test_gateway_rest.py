"""MGS REST calls and channel sockets: authentication, authorisation and single-use tokens."""

from __future__ import annotations

import datetime as dt
import logging
import pathlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy import select
from tests.support.gateway import (
    NODE_ID,
    Gateway,
    assert_closed,
    running_gateway,
    wait_for,
)

from openssm.clock import ManualClock
from openssm.gateway.settings import GatewaySettings
from openssm.protocol.messages import ControlOpen
from openssm.store import instances
from openssm.store.secrets import hash_token
from openssm.store.tables import channel_tokens

IID = "i-0123456789abcdef0"
MI = "mi-0123456789abcdef0"
OTHER_MI = "mi-00000000000000001"


@pytest.fixture
async def gateway(tmp_path: pathlib.Path) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path) as gw:
        await gw.add_instance(IID)
        await gw.add_agent_user()
        yield gw


async def test_control_channel_answers_201_xml_and_stores_only_the_hash(gateway: Gateway) -> None:
    path = f"/v1/control-channel/{IID}"
    token = await gateway.channel_token(path)
    async with gateway.engine.connect() as conn:
        rows = (await conn.execute(select(channel_tokens))).mappings().all()
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hash_token(token) != token
    assert rows[0]["kind"] == "agent-control"
    assert rows[0]["channel_id"] == IID
    expires = rows[0]["expires_at"] - rows[0]["created_at"]
    assert expires == dt.timedelta(seconds=gateway.services.config.token_ttl_seconds)


async def test_response_body_has_the_real_shape(gateway: Gateway) -> None:
    status, text = await gateway.post_channel(f"/v1/control-channel/{IID}")
    assert status == 201
    assert text.startswith(
        "<CreateControlChannelOutput><MessageSchemaVersion>1.0</MessageSchemaVersion><TokenValue>"
    )
    assert text.endswith("</TokenValue></CreateControlChannelOutput>")


async def test_unsigned_and_badly_signed_requests_are_refused(gateway: Gateway) -> None:
    path = f"/v1/control-channel/{IID}"
    async with gateway.http.post(gateway.url(path), data=b"{}") as response:
        assert response.status in (400, 403)
        assert "<" in await response.text()
    status, text = await gateway.post_channel(path, secret="not-the-secret")
    assert status in (400, 403)
    assert "Signature" in text
    status, text = await gateway.post_channel(path, key_id="AKIDUNKNOWN000000000")
    assert status in (400, 403)
    assert "security token" in text


async def test_unknown_instance_is_refused(gateway: Gateway) -> None:
    status, text = await gateway.post_channel("/v1/control-channel/i-0000000000000000f")
    assert status == 400
    assert "not registered" in text


async def test_policy_without_mgs_actions_is_denied(tmp_path: pathlib.Path) -> None:
    deny_all = (
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ssm:Describe*","Resource":"*"}]}'
    )
    async with running_gateway(tmp_path) as gw:
        await gw.add_instance(IID)
        await gw.add_agent_user(policy=deny_all)
        status, text = await gw.post_channel(f"/v1/control-channel/{IID}")
        assert status == 403, text
        assert "<AccessDeniedException>" in text


async def test_opening_a_control_socket_needs_ssmmessages_open_control_channel(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The REST call (CreateControlChannel) and the WebSocket (OpenControlChannel) are authorised
    apart, by AWS's action names: a node allowed only the first gets its token, not the socket."""
    create_only = (
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
        '"Action":"ssmmessages:CreateControlChannel","Resource":"*"}]}'
    )
    async with running_gateway(tmp_path) as gw:
        await gw.add_instance(IID)
        await gw.add_agent_user(policy=create_only)
        assert await gw.channel_token(f"/v1/control-channel/{IID}")
        with (
            caplog.at_level(logging.INFO, logger="openssm.refused"),
            pytest.raises(aiohttp.WSServerHandshakeError) as refused,
        ):
            await gw.agent_socket(f"/v1/control-channel/{IID}?role=subscribe&stream=input")
        assert refused.value.status == 403
        assert IID not in gw.node.controls
        [line] = [
            r.getMessage()
            for r in caplog.records
            if "refused ssmmessages:OpenControlChannel" in r.getMessage()
        ]
        assert IID in line and "user/agent" in line and f"instance/{IID}" in line


async def test_an_instance_opens_only_its_own_channels(tmp_path: pathlib.Path) -> None:
    async with running_gateway(tmp_path) as gw:
        await gw.add_instance_identity(MI, "ASIAINSTANCEKEY00001", "instance-secret")
        await gw.add_instance(OTHER_MI)
        sign = {"key_id": "ASIAINSTANCEKEY00001", "secret": "instance-secret"}
        assert await gw.channel_token(f"/v1/control-channel/{MI}", **sign)
        status, text = await gw.post_channel(f"/v1/control-channel/{OTHER_MI}", **sign)
        assert status == 403, text
        await gw.add_session("tester-00000000000000001", OTHER_MI)
        status, text = await gw.post_channel("/v1/data-channel/tester-00000000000000001", **sign)
        assert status == 403, text
        await gw.add_session("tester-00000000000000002", MI)
        assert await gw.channel_token("/v1/data-channel/tester-00000000000000002", **sign)


async def test_data_channel_for_an_ended_session_is_refused(gateway: Gateway) -> None:
    await gateway.add_session("tester-0000000000000000a", IID, status="Terminated")
    status, text = await gateway.post_channel("/v1/data-channel/tester-0000000000000000a")
    assert (status, "Session is already terminated" in text) == (400, True)
    status, text = await gateway.post_channel("/v1/data-channel/tester-00000000000000404")
    assert (status, "Session is already terminated" in text) == (400, True)


async def open_control(gateway: Gateway, token: str) -> aiohttp.ClientWebSocketResponse:
    ws = await gateway.agent_socket(f"/v1/control-channel/{IID}?role=subscribe&stream=input")
    await ws.send_str(ControlOpen(token_value=token).to_text())
    return ws


async def test_control_socket_registers_the_node_and_clears_it_on_close(gateway: Gateway) -> None:
    token = await gateway.channel_token(f"/v1/control-channel/{IID}")
    ws = await open_control(gateway, token)

    async def held() -> bool:
        row = await instances.get(gateway.engine, IID)
        return row is not None and row.control_node_id == NODE_ID

    await wait_for(held, 5, "control_node_id was never set")
    assert IID in gateway.node.controls
    await ws.close()

    async def released() -> bool:
        row = await instances.get(gateway.engine, IID)
        return row is not None and row.control_node_id is None

    await wait_for(released, 5, "control_node_id was never cleared")


async def test_control_token_is_single_use(gateway: Gateway) -> None:
    token = await gateway.channel_token(f"/v1/control-channel/{IID}")
    first = await open_control(gateway, token)
    await wait_for(lambda: IID in gateway.node.controls, 5, "no control channel")
    second = await open_control(gateway, token)
    await assert_closed(second)
    assert gateway.node.controls[IID].peer.open
    await first.close()


async def test_expired_control_token_is_refused(gateway: Gateway) -> None:
    token = await gateway.add_token(
        "agent-control", IID, ttl=-1, principal_arn="arn:aws:iam::123456789012:user/agent"
    )
    ws = await open_control(gateway, token)
    await assert_closed(ws)


async def test_an_issued_token_expires_by_the_gateways_clock(tmp_path: pathlib.Path) -> None:
    """CreateControlChannel's token opens the socket within its 60 s, and not a moment after."""
    clock = ManualClock(dt.datetime.now(dt.UTC))
    async with running_gateway(tmp_path, clock=clock) as gw:
        await gw.add_instance(IID)
        await gw.add_agent_user()
        stale = await gw.channel_token(f"/v1/control-channel/{IID}")
        fresh = await gw.channel_token(f"/v1/control-channel/{IID}")
        clock.advance(59)
        ws = await open_control(gw, fresh)
        await wait_for(lambda: IID in gw.node.controls, 5, "no control channel")
        await ws.close()
        clock.advance(1)
        await assert_closed(await open_control(gw, stale))


async def test_control_token_of_another_principal_is_refused(gateway: Gateway) -> None:
    token = await gateway.add_token(
        "agent-control", IID, principal_arn="arn:aws:iam::123456789012:user/other"
    )
    ws = await open_control(gateway, token)
    await assert_closed(ws)


async def test_unsigned_control_upgrade_is_refused(gateway: Gateway) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await gateway.http.ws_connect(gateway.url(f"/v1/control-channel/{IID}?role=subscribe&stream=input"))
    assert caught.value.status == 403


async def test_open_frame_must_be_a_json_text_frame(gateway: Gateway) -> None:
    await gateway.add_session("tester-00000000000000003", IID)
    for first in (b"\x00" * 200, "not json", '{"RequestId":"no token"}'):
        ws = await gateway.client_socket("tester-00000000000000003")
        if isinstance(first, bytes):
            await ws.send_bytes(first)
        else:
            await ws.send_str(first)
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION


async def test_oversized_messages_are_refused_before_allocation(tmp_path: pathlib.Path) -> None:
    settings = GatewaySettings(max_message_bytes=4096)
    async with running_gateway(tmp_path, settings=settings) as gw:
        await gw.add_session("tester-00000000000000004", IID)
        ws = await gw.client_socket("tester-00000000000000004")
        await ws.send_str("x" * 5000)
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_agent_data_channel_must_be_signed_and_match_its_target(gateway: Gateway) -> None:
    from tests.support.gateway import next_frame

    from openssm.protocol.messages import AgentDataOpen

    sid = "tester-00000000000000005"
    await gateway.add_session(sid, IID)
    token = await gateway.channel_token(f"/v1/data-channel/{sid}")
    unsigned = await gateway.client_socket(sid)  # no SigV4 on the upgrade
    await unsigned.send_str(AgentDataOpen(token_value=token, client_instance_id=IID).to_text())
    assert "must be signed" in (await next_frame(unsigned)).json()["Output"]

    token = await gateway.channel_token(f"/v1/data-channel/{sid}")
    wrong = await gateway.agent_socket(f"/v1/data-channel/{sid}?role=publish_subscribe")
    await wrong.send_str(AgentDataOpen(token_value=token, client_instance_id="i-0fedcba9876543210").to_text())
    assert "does not target" in (await next_frame(wrong)).json()["Output"]
