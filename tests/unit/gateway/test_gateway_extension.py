"""Node extensions: each message type has one taker, the node's own types are not for the taking,
and a broken or uninterested extension costs a session none of the other taps."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import pytest

from openssm.bus.inprocess import InProcessBus
from openssm.gateway.extension import ExtensionConflict, NodeExtension
from openssm.gateway.jobs import RunCommandJobs
from openssm.gateway.node import GatewayNode
from openssm.gateway.tap import Payload
from openssm.protocol.frames import MessageType
from openssm.services import ServerConfig, Services
from openssm.store.db import database_url_for, make_engine
from openssm.store.secrets import SecretCipher


class Tap:
    async def on_start(self, session: Mapping[str, Any]) -> None: ...

    async def on_output(self, payload: Payload, payload_type: int, t: float) -> None: ...

    async def on_input(self, payload: Payload, payload_type: int, t: float) -> None: ...

    async def on_end(self, status: str, reason: str, t: float) -> None: ...


class Watcher(NodeExtension):
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.tap = Tap()

    def session_tap(self, session: Mapping[str, Any]) -> Tap | None:
        return self.tap if session["session_id"] == self.session_id else None


class Broken(NodeExtension):
    def session_tap(self, session: Mapping[str, Any]) -> Tap | None:
        raise RuntimeError("broken extension")


class TakesTerminate(NodeExtension):
    bus_messages = frozenset({"terminate"})


class TakesTaskComplete(NodeExtension):
    control_messages = frozenset({MessageType.AGENT_TASK_COMPLETE})


class TakesJobReplies(NodeExtension):
    control_messages = frozenset({MessageType.AGENT_JOB_REPLY})


@pytest.fixture
def services(tmp_path: pathlib.Path) -> Services:
    # Building a node touches neither the database nor the bus.
    return Services(
        config=ServerConfig(data_dir=tmp_path),
        engine=make_engine(database_url_for(tmp_path)),
        bus=InProcessBus(),
        cipher=SecretCipher.generate(),
    )


def test_each_extension_is_asked_for_a_tap_and_a_broken_one_is_skipped(services: Services) -> None:
    first, second = Watcher("s-1"), Watcher("s-1")
    node = GatewayNode(services, extensions=[first, Broken(), Watcher("s-2"), second])
    assert node._taps_for({"session_id": "s-1"}) == [first.tap, second.tap]
    assert node._taps_for({"session_id": "s-3"}) == []


def test_a_message_type_has_one_taker(services: Services) -> None:
    with pytest.raises(ExtensionConflict, match="both claim"):
        GatewayNode(services, extensions=[RunCommandJobs(services), TakesJobReplies()])
    with pytest.raises(ExtensionConflict, match="both claim"):
        GatewayNode(services, extensions=[RunCommandJobs(services), RunCommandJobs(services)])


def test_the_nodes_own_messages_are_not_for_the_taking(services: Services) -> None:
    with pytest.raises(ExtensionConflict, match="which the node handles"):
        GatewayNode(services, extensions=[TakesTerminate()])
    with pytest.raises(ExtensionConflict, match="which the node handles"):
        GatewayNode(services, extensions=[TakesTaskComplete()])
