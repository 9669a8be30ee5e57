"""Pure pieces of the agent: chunking, sizes, XML tokens, URLs, deny-list, versions, backoff."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.agent.config import AgentSettings
from openssm.agent.mgs import MgsError, rest_url, token_from_xml, websocket_url
from openssm.agent.sessions.base import SessionFailure, _check_handshake_response
from openssm.agent.sessions.commands import _prefix_lines
from openssm.agent.sessions.port import denied_network, parse_port
from openssm.agent.sessions.shell import utf8_complete_length
from openssm.agent.signing import host_header
from openssm.protocol.frames import Frame, MessageType, PayloadType, go_json
from openssm.protocol.messages import go_sorted, usable_size

DENIED = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fd00:ec2::/32"))


@given(st.text(), st.integers(min_value=0, max_value=4))
def test_utf8_cut_never_splits_a_character(text: str, drop: int) -> None:
    data = text.encode()[: max(0, len(text.encode()) - drop)]
    cut = utf8_complete_length(data)
    data[:cut].decode("utf-8")  # whole characters only
    assert len(data) - cut <= 3  # at most one incomplete character held back
    if data[cut:]:
        with pytest.raises(UnicodeDecodeError):
            data[cut:].decode("utf-8")


@given(st.binary(max_size=64))
def test_utf8_cut_passes_invalid_bytes_through_eventually(data: bytes) -> None:
    cut = utf8_complete_length(data)
    assert 0 <= cut <= len(data) and len(data) - cut <= 3


def test_usable_size() -> None:
    size = usable_size(b'{"cols":80,"rows":24}')
    assert size is not None and (size.cols, size.rows) == (80, 24)
    for bad in (
        b"",
        b"[]",
        b'{"cols":0,"rows":24}',
        b'{"cols":"80","rows":24}',
        b'{"cols":true,"rows":1}',
        b'{"cols":99999999,"rows":1}',
        b"\xff",
        b"[" * 100_000,
    ):
        assert usable_size(bad) is None


def test_token_from_xml_by_element_name() -> None:
    xml = b"<X xmlns='urn:x'><MessageSchemaVersion>1.0</MessageSchemaVersion><TokenValue>t-1</TokenValue></X>"
    assert token_from_xml(xml) == "t-1"
    for bad in (b"<X/>", b"not xml", b"<a>" + b"x" * 70000 + b"</a>"):
        with pytest.raises(MgsError):
            token_from_xml(bad)


def test_urls_follow_the_endpoint_scheme() -> None:
    assert websocket_url("http://h:8080/", "/v1/data-channel/s", "role=publish_subscribe") == (
        "ws://h:8080/v1/data-channel/s?role=publish_subscribe"
    )
    assert websocket_url("https://h", "/p", "a=b") == "wss://h/p?a=b"
    assert rest_url("https://h:443", "/p") == "https://h:443/p"
    assert host_header("https://h:443/p") == "h"
    assert host_header("http://127.0.0.1:8080/") == "127.0.0.1:8080"
    assert host_header("ws://[::1]:9/x") == "[::1]:9"


@pytest.mark.parametrize(
    ("address", "denied"),
    [
        ("169.254.169.254", True),
        ("::ffff:169.254.169.254", True),
        ("fd00:ec2::254", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("fe80::1%eth0", False),
    ],
)
def test_deny_list(address: str, denied: bool) -> None:
    assert (denied_network(address, DENIED) is not None) is denied


def test_parse_port() -> None:
    assert parse_port("22") == 22
    for bad in ("0", "65536", "", None, "22a", "-1"):
        with pytest.raises(SessionFailure):
            parse_port(bad)


def test_go_sorted_sorts_maps_at_every_level() -> None:
    value = {"b": {"z": 1, "a": [{"y": 1, "x": 2}]}, "a": None}
    assert go_json(go_sorted(value)) == b'{"a":null,"b":{"a":[{"x":2,"y":1}],"z":1}}'


def _response(body: object) -> Frame:
    return Frame(MessageType.INPUT_STREAM_DATA, 0, 0, PayloadType.HANDSHAKE_RESPONSE, go_json(body))


def test_handshake_response_checks() -> None:
    ok = {
        "ClientVersion": "1.2.677.0",
        "ProcessedClientActions": [{"ActionType": "SessionType", "ActionStatus": 1}],
        "Errors": None,
    }
    assert _check_handshake_response(_response(ok)).client_version == "1.2.677.0"
    failed = {
        "ClientVersion": "1",
        "ProcessedClientActions": [{"ActionType": "SessionType", "ActionStatus": 2, "Error": "unknown type"}],
    }
    with pytest.raises(SessionFailure, match="unknown type"):
        _check_handshake_response(_response(failed))
    with pytest.raises(SessionFailure, match="boom"):
        _check_handshake_response(_response({**ok, "Errors": ["boom"]}))
    with pytest.raises(SessionFailure):
        _check_handshake_response(Frame(MessageType.INPUT_STREAM_DATA, payload=b"{"))
    with pytest.raises(SessionFailure, match="no ProcessedClientActions"):
        _check_handshake_response(_response({"ClientVersion": "1"}))
    extended = _check_handshake_response(_response({**ok, "OpenSSMFastPath": "1", "Other": 2}))
    assert extended.extensions == {"OpenSSMFastPath": "1"}  # text extension answers only


def test_reconnect_backoff_grows_to_the_cap_with_jitter() -> None:
    settings = AgentSettings(reconnect_initial_seconds=1.0, reconnect_max_seconds=60.0)
    firsts = set()
    for _ in range(20):
        delays = settings.reconnect_backoff().delays()
        waits = [next(delays) for _ in range(12)]
        assert 0.5 <= waits[0] <= 1.0
        assert waits[1] == pytest.approx(2 * waits[0])
        assert waits[7:] == [60.0] * 5
        firsts.add(waits[0])
    assert len(firsts) > 1  # jittered: agents cut off together do not retry in lockstep


def test_reconnect_backoff_never_starts_above_its_cap() -> None:
    delays = (
        AgentSettings(reconnect_initial_seconds=5.0, reconnect_max_seconds=2.0).reconnect_backoff().delays()
    )
    assert all(1.0 <= next(delays) <= 2.0 for _ in range(5))


def test_prefix_lines_across_chunks() -> None:
    out, at_start = _prefix_lines(b"a\nb", b"P:", True)
    assert (out, at_start) == (b"P:a\nP:b", False)
    out, at_start = _prefix_lines(b"c\n", b"P:", at_start)
    assert (out, at_start) == (b"c\n", True)
