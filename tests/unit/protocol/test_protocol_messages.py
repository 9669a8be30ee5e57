"""JSON message builders and parsers: round trips, Go-style leniency, and clear errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.protocol import messages
from openssm.protocol.frames import FLAG_ACK, Frame, MessageType, PayloadType, decode
from openssm.protocol.messages import MessageError

texts = st.text(max_size=40)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40)
json_scalars = st.none() | st.booleans() | st.integers(-(2**31), 2**31) | texts
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=10,
)


def test_protocol_error_is_a_value_error() -> None:
    assert issubclass(MessageError, ValueError)


@given(ids, ids, texts)
def test_open_frames_round_trip_and_are_told_apart(token: str, instance: str, version: str) -> None:
    client = messages.ClientOpen(token_value=token, client_version=version)
    agent = messages.AgentDataOpen(token_value=token, client_instance_id=instance)
    control = messages.ControlOpen(token_value=token, agent_version=version or "3.3.0.0")
    for frame in (client, agent, control):
        assert messages.parse_open_frame(frame.to_text()) == frame


def test_client_open_has_the_plugins_key_order() -> None:
    text = messages.ClientOpen(token_value="t", client_id="c", request_id="r").to_text()
    assert text == (
        '{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"t","ClientId":"c","ClientVersion":"1.2.677.0"}'
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"RequestId":"r"}', "TokenValue is missing"),
        ('{"TokenValue":""}', "TokenValue is empty"),
        ('{"TokenValue":5}', "TokenValue must be a string"),
        ('{"TokenValue":"t","ClientInstanceId":7}', "ClientInstanceId must be a string"),
        ('{"TokenValue":"t","Cookie":{}, "AgentVersion":"3"}', "Cookie must be a string"),
        ("[" * 100_000 + "]" * 100_000, "exceeds limit"),
    ],
)
def test_bad_open_frames_raise_protocol_error(text: str, error: str) -> None:
    with pytest.raises(MessageError, match=re.escape(error)):
        messages.parse_open_frame(text)


def test_deeply_nested_json_is_a_protocol_error() -> None:
    with pytest.raises(MessageError):
        messages.parse_handshake_request(b"[" * 50_000 + b"]" * 50_000)


def test_keys_match_case_insensitively_and_unknown_fields_are_ignored() -> None:
    opened = messages.parse_open_frame('{"tokenvalue":"t","CLIENTVERSION":"1.2.707.0","Extra":{"x":1}}')
    assert opened == messages.ClientOpen(
        "t", client_id="", client_version="1.2.707.0", request_id="", message_schema_version=""
    )
    # An exact-case key wins over a case-insensitive one.
    assert messages.parse_size(b'{"COLS":1,"cols":2,"rows":3}').cols == 2


@given(st.sampled_from(list(messages.SessionType)), st.dictionaries(texts, json_values, max_size=4))
def test_handshake_request_round_trip(session_type: str, properties: dict[str, Any]) -> None:
    request = messages.handshake_request(session_type, properties)
    parsed = messages.parse_handshake_request(request.encode())
    assert parsed.session_type == session_type
    assert parsed.properties == properties
    assert parsed.encode() == request.encode()
    assert parsed.agent_version == "3.3.987.0"


def test_handshake_request_sorts_properties_like_go_maps() -> None:
    request = messages.handshake_request(
        "Port", {"type": "LocalPortForwarding", "portNumber": "22", "localPortNumber": "0"}
    )
    assert request.encode() == (
        b'{"AgentVersion":"3.3.987.0","RequestedClientActions":[{"ActionType":"SessionType",'
        b'"ActionParameters":{"SessionType":"Port","Properties":{"localPortNumber":"0",'
        b'"portNumber":"22","type":"LocalPortForwarding"}}}]}'
    )
    shell = messages.handshake_request("Standard_Stream")
    assert b'"Properties":null' in shell.encode()
    assert shell.properties is None and shell.kms_key_id is None


def test_handshake_request_with_kms() -> None:
    request = messages.handshake_request("Standard_Stream", kms_key_id="key-1", challenge="Y2g=")
    parsed = messages.parse_handshake_request(request.encode())
    assert parsed.kms_key_id == "key-1"
    assert [a.action_type for a in parsed.actions] == ["SessionType", "KMSEncryption"]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"RequestedClientActions":{}}',
        b'{"RequestedClientActions":[5]}',
        b'{"RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":1}}]}',
        b'{"RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":[]}]}',
        b'{"AgentVersion":3}',
    ],
)
def test_bad_handshake_requests(payload: bytes) -> None:
    with pytest.raises(MessageError, match="HandshakeRequest"):
        messages.parse_handshake_request(payload)


def test_handshake_response_like_the_plugin() -> None:
    response = messages.handshake_response(
        (messages.ProcessedAction("SessionType", messages.ActionStatus.SUCCESS),)
    )
    assert response.encode() == (
        b'{"ClientVersion":"1.2.677.0","ProcessedClientActions":[{"ActionType":"SessionType",'
        b'"ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}'
    )
    parsed = messages.parse_handshake_response(response.encode())
    assert parsed == response and parsed.succeeded
    failed = messages.HandshakeResponse(
        "1.2.677.0", (messages.ProcessedAction("SessionType", 2, None, "no"),)
    )
    assert not messages.parse_handshake_response(failed.encode()).succeeded
    with pytest.raises(MessageError, match="ActionStatus"):
        messages.parse_handshake_response(b'{"ProcessedClientActions":[{"ActionStatus":"1"}]}')
    with pytest.raises(MessageError, match="Errors"):
        messages.parse_handshake_response(b'{"Errors":[1]}')


@given(st.integers(0, 2**63 - 1), texts)
def test_handshake_complete_round_trip(nanos: int, message: str) -> None:
    complete = messages.HandshakeComplete(nanos, message)
    assert messages.parse_handshake_complete(complete.encode()) == complete


@given(st.binary(min_size=1, max_size=100))
def test_encryption_challenge_round_trip(challenge: bytes) -> None:
    message = messages.EncryptionChallenge(challenge)
    assert messages.parse_encryption_challenge(message.encode()) == message


def test_encryption_challenge_rejects_bad_base64() -> None:
    with pytest.raises(MessageError, match="base64"):
        messages.parse_encryption_challenge(b'{"Challenge":"***"}')
    with pytest.raises(MessageError, match="Challenge is empty"):
        messages.parse_encryption_challenge(b'{"Challenge":""}')


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_size_round_trip(cols: int, rows: int) -> None:
    size = messages.TerminalSize(cols, rows)
    assert size.encode() == f'{{"cols":{cols},"rows":{rows}}}'.encode()
    assert messages.parse_size(size.encode()) == size


@pytest.mark.parametrize(
    "payload", [b'{"cols":-1,"rows":2}', b'{"cols":4294967296,"rows":2}', b'{"cols":1.5}', b'{"cols":true}']
)
def test_size_rejects_out_of_range_or_wrong_types(payload: bytes) -> None:
    with pytest.raises(MessageError, match="cols"):
        messages.parse_size(payload)


@given(ids, ids, texts)
def test_channel_closed_round_trip(session_id: str, target: str, output: str) -> None:
    closed = messages.ChannelClosed(session_id, target, output)
    frame = closed.to_frame()
    assert (frame.message_type, frame.sequence_number, frame.flags, frame.payload_type) == (
        "channel_closed",
        0,
        0,
        0,
    )
    assert messages.parse_service_message(frame) == closed
    assert list(json.loads(bytes(frame.payload))) == [
        "MessageId",
        "CreatedDate",
        "DestinationId",
        "SessionId",
        "MessageType",
        "SchemaVersion",
        "Output",
    ]


def test_iso_millis_format() -> None:
    moment = datetime(2026, 11, 28, 16, 31, 10, 123456, tzinfo=UTC)
    assert messages.iso_millis(moment) == "2026-11-28T16:31:10.123Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", messages.ChannelClosed("s").created_date)


def test_agent_session_state_uses_flags_3() -> None:
    state = messages.AgentSessionState("s-1", messages.SessionState.CONNECTED)
    frame = state.to_frame()
    assert frame.flags == FLAG_ACK
    assert frame.payload == b'{"SchemaVersion":1,"SessionState":"Connected","SessionId":"s-1"}'
    assert messages.parse_service_message(frame) == state


def _document() -> dict[str, Any]:
    return {
        "schemaVersion": "1.0",
        "sessionType": "Port",
        "parameters": {"portNumber": {"type": "String", "default": "80"}},
        "inputs": {},
        "properties": {"portNumber": "{{ portNumber }}", "note": "<&>"},
    }


@given(ids, texts, st.dictionaries(texts, texts, max_size=4), texts, texts)
def test_interactive_shell_round_trip(
    session_id: str, name: str, parameters: dict[str, str], user: str, owner: str
) -> None:
    content = messages.StartSessionContent(session_id, name, _document(), parameters, user, owner)
    shell = messages.InteractiveShell(content)
    frame = shell.to_frame()
    assert frame.message_type == "interactive_shell"
    parsed = messages.parse_interactive_shell(frame.payload)
    assert parsed.content == content
    assert parsed.task_id == session_id
    assert parsed.topic == "aws.ssm.startSession"
    outer = json.loads(bytes(frame.payload))
    assert list(outer) == ["Content", "TaskId", "Topic", "SchemaVersion"]
    assert isinstance(outer["Content"], str)


def test_interactive_shell_inner_keys_are_case_insensitive() -> None:
    inner = {
        "sessionid": "s-1",
        "DOCUMENTNAME": "AWS-StartSSHSession",
        "documentContent": _document(),
        "parameters": {"portNumber": ["22"]},
        "runAsUser": "alice",
        "Unknown": True,
    }
    payload = json.dumps({"content": json.dumps(inner), "taskid": "s-1"}).encode()
    parsed = messages.parse_interactive_shell(payload).content
    assert (parsed.session_id, parsed.document_name, parsed.run_as_user) == (
        "s-1",
        "AWS-StartSSHSession",
        "alice",
    )
    assert parsed.parameters == {"portNumber": "22"}  # one-element list unwrapped


@pytest.mark.parametrize(
    ("inner", "error"),
    [
        ({"DocumentContent": {}}, "SessionId is missing"),
        ({"SessionId": "s"}, "DocumentContent is missing"),
        ({"SessionId": "s", "DocumentContent": []}, "DocumentContent must be an object"),
        ({"SessionId": "s", "DocumentContent": {"sessionType": 1}}, "sessionType must be a string"),
        ({"SessionId": "s", "DocumentContent": {}, "Parameters": []}, "Parameters must be an object"),
    ],
)
def test_bad_interactive_shell_content(inner: dict[str, Any], error: str) -> None:
    payload = json.dumps({"Content": json.dumps(inner)}).encode()
    with pytest.raises(MessageError, match=re.escape(error)):
        messages.parse_interactive_shell(payload)


@pytest.mark.parametrize(
    ("given", "scalar"),
    [
        ("22", "22"),  # what the service sends (captures: {"portNumber":"19470"})
        (["22"], "22"),  # the API's list form, one value
        (["a", "b"], "a,b"),  # several values: joined by commas, as the gateway sends them
        ([], ""),
        (True, "true"),  # anything else as amazon-ssm-agent writes a non-string into text: JSON
        (3, "3"),
        (None, "null"),
        ({"k": "v"}, '{"k":"v"}'),
        ([1, "x"], "1,x"),
    ],
)
def test_scalar_parameters_follow_one_rule_on_both_sides(given: Any, scalar: str) -> None:
    assert messages.scalar_parameters({"p": given}) == {"p": scalar}
    inner = {"SessionId": "s", "DocumentContent": {}, "Parameters": {"p": given}}
    parsed = messages.parse_interactive_shell(json.dumps({"Content": json.dumps(inner)}).encode())
    assert parsed.content.parameters == {"p": scalar}


def test_a_lone_surrogate_in_a_parameter_object_is_a_message_error() -> None:
    inner = '{"SessionId":"s","DocumentContent":{},"Parameters":{"p":{"k":"\\ud800"}}}'
    with pytest.raises(MessageError, match="not valid UTF-8"):
        messages.parse_start_session_content(inner)


def test_scalar_parameters_of_the_api_lists_round_trip_as_the_agent_reads_them() -> None:
    content = messages.StartSessionContent(
        "s", "d", {}, messages.scalar_parameters({"portNumber": ["22"], "hosts": ["a", "b"]})
    )
    payload = messages.InteractiveShell(content).encode()
    assert messages.parse_interactive_shell(payload).content.parameters == {
        "portNumber": "22",
        "hosts": "a,b",
    }


def test_interactive_shell_content_must_be_a_string() -> None:
    with pytest.raises(MessageError, match="Content must be a string"):
        messages.parse_interactive_shell(b'{"Content":{"SessionId":"s"}}')


@given(ids, texts, texts, st.booleans(), st.integers(0, 100))
def test_task_complete_and_acknowledge(
    task: str, status: str, output: str, routing: bool, retry: int
) -> None:
    complete = messages.AgentTaskComplete(
        task, status, "i-0123456789abcdef0", output, is_routing_failure=routing, retry_number=retry
    )
    frame = complete.to_frame()
    assert messages.parse_service_message(frame) == complete
    ack = messages.task_acknowledge_for(frame)
    assert ack.message_id == str(frame.message_id)
    assert ack.task_id == task
    assert messages.parse_service_message(ack.to_frame()) == ack


def test_task_complete_type_errors() -> None:
    with pytest.raises(MessageError, match="IsRoutingFailure must be a boolean"):
        messages.parse_agent_task_complete(b'{"TaskId":"s","IsRoutingFailure":"false"}')
    with pytest.raises(MessageError, match="TaskId is missing"):
        messages.parse_agent_task_complete(b"{}")


@given(ids, texts, texts)
def test_job_messages_round_trip(job_id: str, content: str, message_id: str) -> None:
    for message in (
        messages.AgentJob(job_id, content, "aws.ssm.sendCommand.test"),
        messages.AgentJobAck(job_id, message_id, "51401", "bad"),
        messages.AgentJobReply(job_id, content),
        messages.AgentJobReplyAck(job_id, message_id),
    ):
        assert messages.parse_service_message(message.to_frame()) == message


def test_job_reply_content_is_bounded() -> None:
    payload = messages.AgentJobReply("j", "x" * (messages.MAX_JOB_REPLY_CONTENT + 1)).encode()
    with pytest.raises(MessageError, match="content exceeds"):
        messages.parse_agent_job_reply(payload)


def test_job_ack_uses_lower_camel_case_keys() -> None:
    ack = messages.AgentJobAck("j", "m", created_date="2026-11-28T16:31:10.000Z")
    assert ack.encode() == (
        b'{"jobId":"j","acknowledgedMessageId":"m","createdDate":"2026-11-28T16:31:10.000Z",'
        b'"statusCode":"200","errorMessage":""}'
    )


@pytest.mark.parametrize("factory", [messages.start_publication, messages.pause_publication])
def test_publication_messages_are_non_empty_and_parse(factory: Any) -> None:
    message = factory("s-1")
    frame = message.to_frame()
    assert frame.payload
    assert messages.parse_service_message(frame) == message
    # Receivers ignore the body, whatever it is.
    junk = Frame(frame.message_type, payload=b"\x00garbage")
    assert messages.parse_service_message(junk) == messages.Publication(frame.message_type, "")


def test_stream_and_unknown_types_are_not_service_messages() -> None:
    with pytest.raises(MessageError, match="no parser"):
        messages.parse_service_message(Frame(MessageType.OUTPUT_STREAM_DATA, payload=b"x"))
    with pytest.raises(MessageError, match="does not carry JSON"):
        messages.parse_stream_json(Frame(MessageType.OUTPUT_STREAM_DATA, payload_type=PayloadType.OUTPUT))


def test_parse_stream_json_dispatches_by_payload_type() -> None:
    size = messages.TerminalSize(80, 24)
    frame = Frame(MessageType.INPUT_STREAM_DATA, 1, 0, PayloadType.SIZE, size.encode())
    assert messages.parse_stream_json(frame) == size


def test_payloads_decoded_as_views_parse_like_bytes() -> None:
    # Data channels decode received messages with owned=True: payloads are read-only views.
    size = messages.TerminalSize(80, 24)
    wire = bytearray(Frame(MessageType.INPUT_STREAM_DATA, 1, 0, PayloadType.SIZE, size.encode()).encode())
    frame = decode(wire, owned=True)
    assert isinstance(frame.payload, memoryview)
    assert messages.parse_stream_json(frame) == size
    closed = messages.ChannelClosed(session_id="s", output="bye")
    wire = bytearray(Frame(MessageType.CHANNEL_CLOSED, payload=closed.encode()).encode())
    assert messages.parse_service_message(decode(wire, owned=True)) == closed


@given(json_values)
def test_parsers_never_raise_anything_but_protocol_error(value: Any) -> None:
    payload = json.dumps(value).encode()
    for parse in (
        messages.parse_handshake_request,
        messages.parse_handshake_response,
        messages.parse_handshake_complete,
        messages.parse_size,
        messages.parse_channel_closed,
        messages.parse_interactive_shell,
        messages.parse_agent_task_complete,
        messages.parse_agent_job_ack,
        messages.parse_open_frame,
    ):
        try:
            parse(payload)
        except MessageError:
            pass


def test_every_exported_name_resolves_to_its_submodule() -> None:
    for name in messages.__all__:
        value = getattr(messages, name)
        homes = [
            module
            for module in ("codec", "parameters", "data_channel", "control", "dispatch")
            if vars(getattr(messages, module)).get(name) is value
        ]
        assert homes, name
    with pytest.raises(AttributeError):
        messages.Frame  # noqa: B018  (a submodule's import is not the package's name)


def test_the_open_frame_loads_only_the_data_channel_part() -> None:
    """The client's start-up path imports the open frame's part alone (the control channel's and the
    dispatch tables are for the agent and the gateway)."""
    code = (
        "import sys\n"
        "from openssm.protocol.messages import ClientOpen\n"
        "print(sorted(m for m in sys.modules if m.startswith('openssm.protocol.messages.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.replace("'", '"')) == [
        "openssm.protocol.messages.codec",
        "openssm.protocol.messages.data_channel",
    ]
