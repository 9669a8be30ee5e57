"""Typed builders and parsers for the JSON messages of the Session Manager protocol (sans-I/O).

Covers ``session-manager-protocol.md`` §2 (data channel: open frames, handshake, Size,
channel_closed, agent_session_state) and §4 (control channel: interactive_shell, task and job
messages, publication control). Every message is a frozen dataclass with ``encode()`` producing
the payload bytes as the real Go programs write them (compact JSON, struct field order), and a
``parse_*`` function that validates types and raises :class:`MessageError`.

Parsing follows Go's ``encoding/json`` as both real peers use it: a key matches exactly or, failing
that, case-insensitively; unknown keys are ignored; a missing or ``null`` field takes its zero value
unless the field is required.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, TypeAlias

from openssm.errors import RemoteProtocolError
from openssm.protocol.frames import (
    FLAG_ACK,
    MAX_FRAME_SIZE,
    Frame,
    MessageType,
    Payload,
    PayloadType,
    go_json,
)
from openssm.protocol.versions import AGENT_VERSION, CLIENT_VERSION

JsonValue: TypeAlias = Any

MAX_OPEN_FRAME_BYTES: Final = 64 * 1024
MAX_PAYLOAD_BYTES: Final = MAX_FRAME_SIZE
MESSAGE_SCHEMA_VERSION: Final = "1.0"
UINT32_MAX: Final = 0xFFFF_FFFF
INT64_MAX: Final = (1 << 63) - 1
START_SESSION_TOPIC: Final = "aws.ssm.startSession"
TASK_COMPLETE_TOPIC: Final = "agent_task_complete"


class MessageError(RemoteProtocolError, ValueError):
    """A protocol message that is malformed, of the wrong type, or too large."""


class SessionType(enum.StrEnum):
    STANDARD_STREAM = "Standard_Stream"
    INTERACTIVE_COMMANDS = "InteractiveCommands"
    NON_INTERACTIVE_COMMANDS = "NonInteractiveCommands"
    PORT = "Port"


class ActionType(enum.StrEnum):
    SESSION_TYPE = "SessionType"
    KMS_ENCRYPTION = "KMSEncryption"


class ActionStatus(enum.IntEnum):
    SUCCESS = 1
    FAILED = 2
    UNSUPPORTED = 3


class SessionState(enum.StrEnum):
    CONNECTED = "Connected"
    TERMINATING = "Terminating"


def iso_millis(moment: datetime | None = None) -> str:
    """UTC ISO-8601 with milliseconds and ``Z``, as the service writes ``CreatedDate``."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _new_id() -> str:
    return str(uuid.uuid4())


def go_sorted(value: JsonValue) -> JsonValue:
    """``value`` with every object's keys sorted, as Go marshals ``map[string]interface{}``."""
    if isinstance(value, dict):
        return {key: go_sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [go_sorted(item) for item in value]
    return value


# -- strict field access ----------------------------------------------------------------------------


class _Fields:
    """A decoded JSON object read the way Go's encoding/json fills a struct."""

    def __init__(self, obj: dict[str, JsonValue], what: str) -> None:
        self._obj = obj
        self._folded: dict[str, str] = {}
        for key in obj:
            self._folded.setdefault(key.casefold(), key)
        self.what = what

    def raw(self, key: str) -> JsonValue:
        if key in self._obj:
            return self._obj[key]
        actual = self._folded.get(key.casefold())
        return None if actual is None else self._obj[actual]

    def has(self, key: str) -> bool:
        return key in self._obj or key.casefold() in self._folded

    def _fail(self, key: str, expected: str, value: JsonValue) -> MessageError:
        return MessageError(f"{self.what}: {key} must be {expected}, got {type(value).__name__}")

    def string(self, key: str, *, required: bool = False) -> str:
        value = self.raw(key)
        if value is None:
            if required:
                raise MessageError(f"{self.what}: {key} is missing")
            return ""
        if not isinstance(value, str):
            raise self._fail(key, "a string", value)
        if required and not value:
            raise MessageError(f"{self.what}: {key} is empty")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(key, "a string", value)
        return value

    def integer(self, key: str, *, default: int = 0, minimum: int = 0, maximum: int = INT64_MAX) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer", value)
        if not minimum <= value <= maximum:
            raise MessageError(f"{self.what}: {key}={value} is outside {minimum}..{maximum}")
        return value

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._fail(key, "a boolean", value)
        return value

    def object(self, key: str, *, required: bool = False) -> dict[str, JsonValue] | None:
        value = self.raw(key)
        if value is None:
            if required:
                raise MessageError(f"{self.what}: {key} is missing")
            return None
        if not isinstance(value, dict):
            raise self._fail(key, "an object", value)
        return value

    def array(self, key: str) -> list[JsonValue] | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self._fail(key, "an array", value)
        return value


def _load(data: Payload | str, what: str, limit: int = MAX_PAYLOAD_BYTES) -> JsonValue:
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    if size > limit:
        raise MessageError(f"{what}: {size} bytes exceeds limit {limit}")
    try:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"{what}: not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise MessageError(f"{what}: JSON nested too deeply") from exc


def _load_object(data: Payload | str, what: str, limit: int = MAX_PAYLOAD_BYTES) -> _Fields:
    value = _load(data, what, limit)
    if not isinstance(value, dict):
        raise MessageError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return _Fields(value, what)


def _fields_of(value: JsonValue, what: str) -> _Fields:
    if not isinstance(value, dict):
        raise MessageError(f"{what}: expected an object, got {type(value).__name__}")
    return _Fields(value, what)


def message_frame(message_type: str, payload: bytes, *, flags: int = 0) -> Frame:
    """A non-stream frame (control-channel messages, channel_closed, session state): seq 0, ptype 0."""
    return Frame(message_type, 0, flags, PayloadType.NONE, payload)


# -- WebSocket open frames (text) -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ClientOpen:
    """First text frame of a client (plugin) data channel."""

    token_value: str
    client_id: str = dataclasses.field(default_factory=_new_id)
    client_version: str = CLIENT_VERSION
    request_id: str = dataclasses.field(default_factory=_new_id)
    message_schema_version: str = MESSAGE_SCHEMA_VERSION

    def to_text(self) -> str:
        return go_json(
            {
                "MessageSchemaVersion": self.message_schema_version,
                "RequestId": self.request_id,
                "TokenValue": self.token_value,
                "ClientId": self.client_id,
                "ClientVersion": self.client_version,
            }
        ).decode("utf-8")


@dataclasses.dataclass(frozen=True, slots=True)
class AgentDataOpen:
    """First text frame of an agent data channel (``ClientInstanceId`` marks it as the agent)."""

    token_value: str
    client_instance_id: str
    client_id: str = ""
    request_id: str = dataclasses.field(default_factory=_new_id)
    message_schema_version: str = MESSAGE_SCHEMA_VERSION

    def to_text(self) -> str:
        return go_json(
            {
                "MessageSchemaVersion": self.message_schema_version,
                "RequestId": self.request_id,
                "TokenValue": self.token_value,
                "ClientInstanceId": self.client_instance_id,
                "ClientId": self.client_id,
            }
        ).decode("utf-8")


@dataclasses.dataclass(frozen=True, slots=True)
class ControlOpen:
    """First text frame of an agent control channel."""

    token_value: str
    agent_version: str = AGENT_VERSION
    platform_type: str = "linux"
    request_id: str = dataclasses.field(default_factory=_new_id)
    cookie: str | None = None
    message_schema_version: str = MESSAGE_SCHEMA_VERSION

    def to_text(self) -> str:
        return go_json(
            {
                "Cookie": self.cookie,
                "MessageSchemaVersion": self.message_schema_version,
                "RequestId": self.request_id,
                "TokenValue": self.token_value,
                "AgentVersion": self.agent_version,
                "PlatformType": self.platform_type,
            }
        ).decode("utf-8")


OpenFrame: TypeAlias = ClientOpen | AgentDataOpen | ControlOpen


def parse_open_frame(data: str | bytes) -> OpenFrame:
    """Parse the first text frame of any channel.

    ``ClientInstanceId`` means an agent data channel, ``AgentVersion`` a control channel, anything
    else a client. The caller checks that the kind fits the URL it arrived on.
    """
    fields = _load_object(data, "open frame", MAX_OPEN_FRAME_BYTES)
    token = fields.string("TokenValue", required=True)
    schema = fields.string("MessageSchemaVersion")
    request_id = fields.string("RequestId")
    if fields.has("ClientInstanceId"):
        return AgentDataOpen(
            token_value=token,
            client_instance_id=fields.string("ClientInstanceId", required=True),
            client_id=fields.string("ClientId"),
            request_id=request_id,
            message_schema_version=schema,
        )
    if fields.has("AgentVersion"):
        return ControlOpen(
            token_value=token,
            agent_version=fields.string("AgentVersion"),
            platform_type=fields.string("PlatformType"),
            request_id=request_id,
            cookie=fields.optional_string("Cookie"),
            message_schema_version=schema,
        )
    return ClientOpen(
        token_value=token,
        client_id=fields.string("ClientId"),
        client_version=fields.string("ClientVersion"),
        request_id=request_id,
        message_schema_version=schema,
    )


# -- handshake (stream payload types 5, 6, 7, 8, 9) -------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RequestedAction:
    """One entry of ``RequestedClientActions``; ``parameters`` is the raw ``ActionParameters``."""

    action_type: str
    parameters: Mapping[str, JsonValue] | None

    def to_json(self) -> dict[str, JsonValue]:
        params = self.parameters
        encoded: JsonValue
        if params is None:
            encoded = None
        elif self.action_type == ActionType.SESSION_TYPE:
            # Go struct order; Properties is a map, so Go sorts its keys.
            encoded = {
                "SessionType": params.get("SessionType", ""),
                "Properties": go_sorted(params.get("Properties")),
            }
        elif self.action_type == ActionType.KMS_ENCRYPTION:
            encoded = {"KMSKeyId": params.get("KMSKeyId", ""), "Challenge": params.get("Challenge", "")}
        else:
            encoded = go_sorted(dict(params))
        return {"ActionType": self.action_type, "ActionParameters": encoded}


@dataclasses.dataclass(frozen=True, slots=True)
class HandshakeRequest:
    PAYLOAD_TYPE: ClassVar[PayloadType] = PayloadType.HANDSHAKE_REQUEST

    agent_version: str
    actions: tuple[RequestedAction, ...]

    def encode(self) -> bytes:
        return go_json(
            {
                "AgentVersion": self.agent_version,
                "RequestedClientActions": [action.to_json() for action in self.actions],
            }
        )

    def _parameters_of(self, action_type: ActionType) -> Mapping[str, JsonValue] | None:
        for action in self.actions:
            if action.action_type == action_type:
                return action.parameters or {}
        return None

    @property
    def session_type(self) -> str | None:
        params = self._parameters_of(ActionType.SESSION_TYPE)
        if params is None:
            return None
        value = params.get("SessionType")
        return value if isinstance(value, str) else None

    @property
    def properties(self) -> dict[str, JsonValue] | None:
        """The SessionType action's ``Properties`` when it is an object (Port sessions)."""
        params = self._parameters_of(ActionType.SESSION_TYPE)
        value = None if params is None else params.get("Properties")
        return value if isinstance(value, dict) else None

    @property
    def kms_key_id(self) -> str | None:
        params = self._parameters_of(ActionType.KMS_ENCRYPTION)
        value = None if params is None else params.get("KMSKeyId")
        return value if isinstance(value, str) else None


def handshake_request(
    session_type: str,
    properties: Mapping[str, JsonValue] | None = None,
    *,
    agent_version: str = AGENT_VERSION,
    kms_key_id: str | None = None,
    challenge: str | None = None,
) -> HandshakeRequest:
    """The agent's HandshakeRequest: a SessionType action, plus KMSEncryption if a key is given."""
    actions = [
        RequestedAction(
            ActionType.SESSION_TYPE,
            {"SessionType": session_type, "Properties": None if properties is None else dict(properties)},
        )
    ]
    if kms_key_id is not None:
        actions.append(
            RequestedAction(ActionType.KMS_ENCRYPTION, {"KMSKeyId": kms_key_id, "Challenge": challenge or ""})
        )
    return HandshakeRequest(agent_version, tuple(actions))


def parse_handshake_request(payload: Payload) -> HandshakeRequest:
    fields = _load_object(payload, "HandshakeRequest")
    actions = []
    for index, item in enumerate(fields.array("RequestedClientActions") or []):
        action = _fields_of(item, f"HandshakeRequest.RequestedClientActions[{index}]")
        action_type = action.string("ActionType", required=True)
        params = action.object("ActionParameters")
        if action_type == ActionType.SESSION_TYPE:
            session = _fields_of(params or {}, f"{action.what}.ActionParameters")
            params = {"SessionType": session.string("SessionType", required=True)} | {
                "Properties": session.raw("Properties")
            }
        actions.append(RequestedAction(action_type, params))
    return HandshakeRequest(fields.string("AgentVersion"), tuple(actions))


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessedAction:
    action_type: str
    action_status: int
    action_result: JsonValue = None
    error: str = ""

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "ActionType": self.action_type,
            "ActionStatus": self.action_status,
            "ActionResult": self.action_result,
            "Error": self.error,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class HandshakeResponse:
    PAYLOAD_TYPE: ClassVar[PayloadType] = PayloadType.HANDSHAKE_RESPONSE

    client_version: str
    actions: tuple[ProcessedAction, ...]
    errors: tuple[str, ...] | None = None
    # Extra top-level keys (OpenSSM extensions an OpenSSM agent offered; AWS's agent ignores them).
    extensions: tuple[tuple[str, str], ...] = ()

    def encode(self) -> bytes:
        return go_json(
            {
                "ClientVersion": self.client_version,
                "ProcessedClientActions": [action.to_json() for action in self.actions],
                "Errors": None if self.errors is None else list(self.errors),
                **dict(self.extensions),
            }
        )

    @property
    def succeeded(self) -> bool:
        """True when every action succeeded (the agent cancels the session otherwise)."""
        return not self.errors and all(a.action_status == ActionStatus.SUCCESS for a in self.actions)


def handshake_response(
    actions: tuple[ProcessedAction, ...],
    *,
    client_version: str = CLIENT_VERSION,
    extensions: tuple[tuple[str, str], ...] = (),
) -> HandshakeResponse:
    return HandshakeResponse(client_version, actions, extensions=extensions)


def parse_handshake_response(payload: Payload) -> HandshakeResponse:
    fields = _load_object(payload, "HandshakeResponse")
    actions = []
    for index, item in enumerate(fields.array("ProcessedClientActions") or []):
        action = _fields_of(item, f"HandshakeResponse.ProcessedClientActions[{index}]")
        actions.append(
            ProcessedAction(
                action_type=action.string("ActionType"),
                action_status=action.integer("ActionStatus", maximum=UINT32_MAX),
                action_result=action.raw("ActionResult"),
                error=action.string("Error"),
            )
        )
    errors_raw = fields.array("Errors")
    errors: tuple[str, ...] | None = None
    if errors_raw is not None:
        if not all(isinstance(item, str) for item in errors_raw):
            raise MessageError("HandshakeResponse: Errors must be strings")
        errors = tuple(errors_raw)
    return HandshakeResponse(fields.string("ClientVersion"), tuple(actions), errors)


@dataclasses.dataclass(frozen=True, slots=True)
class HandshakeComplete:
    PAYLOAD_TYPE: ClassVar[PayloadType] = PayloadType.HANDSHAKE_COMPLETE

    handshake_time_to_complete: int  # nanoseconds (Go time.Duration)
    customer_message: str = ""

    def encode(self) -> bytes:
        return go_json(
            {
                "HandshakeTimeToComplete": self.handshake_time_to_complete,
                "CustomerMessage": self.customer_message,
            }
        )


def parse_handshake_complete(payload: Payload) -> HandshakeComplete:
    fields = _load_object(payload, "HandshakeComplete")
    return HandshakeComplete(
        fields.integer("HandshakeTimeToComplete", minimum=-INT64_MAX - 1),
        fields.string("CustomerMessage"),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class EncryptionChallenge:
    """EncChallengeRequest (8) / EncChallengeResponse (9): ``{"Challenge": base64}``."""

    challenge: bytes

    def encode(self) -> bytes:
        return go_json({"Challenge": base64.b64encode(self.challenge).decode("ascii")})


def parse_encryption_challenge(payload: Payload) -> EncryptionChallenge:
    fields = _load_object(payload, "EncChallenge")
    try:
        raw = base64.b64decode(fields.string("Challenge", required=True), validate=True)
    except binascii.Error as exc:
        raise MessageError(f"EncChallenge: Challenge is not base64 ({exc})") from exc
    return EncryptionChallenge(raw)


# -- Size (payload type 3) --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TerminalSize:
    PAYLOAD_TYPE: ClassVar[PayloadType] = PayloadType.SIZE

    cols: int
    rows: int

    def encode(self) -> bytes:
        return go_json({"cols": self.cols, "rows": self.rows})


def parse_size(payload: Payload) -> TerminalSize:
    fields = _load_object(payload, "Size", 4096)
    return TerminalSize(
        fields.integer("cols", maximum=UINT32_MAX), fields.integer("rows", maximum=UINT32_MAX)
    )


# -- data-channel service messages ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelClosed:
    """``channel_closed`` from the gateway to a client or agent: the session is over."""

    session_id: str
    destination_id: str = ""
    output: str = ""
    message_id: str = dataclasses.field(default_factory=_new_id)
    created_date: str = dataclasses.field(default_factory=iso_millis)
    schema_version: int = 1

    def encode(self) -> bytes:
        return go_json(
            {
                "MessageId": self.message_id,
                "CreatedDate": self.created_date,
                "DestinationId": self.destination_id,
                "SessionId": self.session_id,
                "MessageType": MessageType.CHANNEL_CLOSED.value,
                "SchemaVersion": self.schema_version,
                "Output": self.output,
            }
        )

    def to_frame(self) -> Frame:
        return message_frame(MessageType.CHANNEL_CLOSED, self.encode())


def parse_channel_closed(payload: Payload) -> ChannelClosed:
    fields = _load_object(payload, "channel_closed")
    return ChannelClosed(
        session_id=fields.string("SessionId", required=True),
        destination_id=fields.string("DestinationId"),
        output=fields.string("Output"),
        message_id=fields.string("MessageId"),
        created_date=fields.string("CreatedDate"),
        schema_version=fields.integer("SchemaVersion", maximum=UINT32_MAX),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class AgentSessionState:
    """``agent_session_state`` (agent → gateway on the data channel), sent with Flags 3."""

    session_id: str
    state: str
    schema_version: int = 1

    def encode(self) -> bytes:
        return go_json(
            {"SchemaVersion": self.schema_version, "SessionState": self.state, "SessionId": self.session_id}
        )

    def to_frame(self) -> Frame:
        return message_frame(MessageType.AGENT_SESSION_STATE, self.encode(), flags=FLAG_ACK)


def parse_agent_session_state(payload: Payload) -> AgentSessionState:
    fields = _load_object(payload, "agent_session_state")
    return AgentSessionState(
        session_id=fields.string("SessionId"),
        state=fields.string("SessionState", required=True),
        schema_version=fields.integer("SchemaVersion", maximum=UINT32_MAX),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Publication:
    """``start_publication`` / ``pause_publication`` (gateway → agent). Receivers ignore the body;
    it is non-empty because the agent cannot read empty payloads."""

    message_type: str
    session_id: str = ""
    schema_version: int = 1

    def encode(self) -> bytes:
        return go_json(
            {
                "SchemaVersion": self.schema_version,
                "MessageType": self.message_type,
                "SessionId": self.session_id,
            }
        )

    def to_frame(self) -> Frame:
        return message_frame(self.message_type, self.encode())


def start_publication(session_id: str) -> Publication:
    return Publication(MessageType.START_PUBLICATION, session_id)


def pause_publication(session_id: str) -> Publication:
    return Publication(MessageType.PAUSE_PUBLICATION, session_id)


# -- control channel: interactive_shell -------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StartSessionContent:
    """The inner ``Content`` of ``interactive_shell``: which session to start and how."""

    session_id: str
    document_name: str
    document_content: dict[str, JsonValue]
    parameters: dict[str, str]
    run_as_user: str = ""
    session_owner: str = ""

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "SessionId": self.session_id,
            "DocumentName": self.document_name,
            "DocumentContent": self.document_content,
            "Parameters": self.parameters,
            "RunAsUser": self.run_as_user,
            "SessionOwner": self.session_owner,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class InteractiveShell:
    """``interactive_shell`` (gateway → agent): outer envelope carrying the inner JSON as a string."""

    content: StartSessionContent
    task_id: str = ""
    topic: str = START_SESSION_TOPIC
    schema_version: int = 1

    def encode(self) -> bytes:
        inner = go_json(self.content.to_json()).decode("utf-8")
        return go_json(
            {
                "Content": inner,
                "TaskId": self.task_id or self.content.session_id,
                "Topic": self.topic,
                "SchemaVersion": self.schema_version,
            }
        )

    def to_frame(self) -> Frame:
        return message_frame(MessageType.INTERACTIVE_SHELL, self.encode())


def _scalar_parameters(value: JsonValue, what: str) -> dict[str, str]:
    """``Parameters`` as name → scalar string. A one-element list of strings is unwrapped, since the
    API's own shape is name → [str]."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MessageError(f"{what}: Parameters must be an object")
    out: dict[str, str] = {}
    for name, item in value.items():
        if isinstance(item, list) and len(item) == 1:
            item = item[0]
        if not isinstance(item, str):
            raise MessageError(f"{what}: parameter {name!r} must be a string")
        out[name] = item
    return out


def parse_start_session_content(data: str | bytes) -> StartSessionContent:
    fields = _load_object(data, "interactive_shell Content")
    document = fields.object("DocumentContent", required=True) or {}
    if not isinstance(document.get("sessionType", ""), str):
        raise MessageError("interactive_shell Content: DocumentContent.sessionType must be a string")
    return StartSessionContent(
        session_id=fields.string("SessionId", required=True),
        document_name=fields.string("DocumentName"),
        document_content=document,
        parameters=_scalar_parameters(fields.raw("Parameters"), fields.what),
        run_as_user=fields.string("RunAsUser"),
        session_owner=fields.string("SessionOwner"),
    )


def parse_interactive_shell(payload: Payload) -> InteractiveShell:
    fields = _load_object(payload, "interactive_shell")
    content = fields.string("Content", required=True)
    return InteractiveShell(
        content=parse_start_session_content(content),
        task_id=fields.string("TaskId"),
        topic=fields.string("Topic"),
        schema_version=fields.integer("SchemaVersion", maximum=UINT32_MAX),
    )


# -- control channel: task completion ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class AgentTaskComplete:
    """``agent_task_complete`` (agent → gateway): a session ended; ``output`` holds error text."""

    task_id: str
    final_task_status: str = "Success"
    instance_id: str = ""
    output: str = ""
    is_routing_failure: bool = False
    aws_account_id: str = ""
    s3_bucket: str = ""
    s3_url_suffix: str = ""
    cwl_group: str = ""
    cwl_stream: str = ""
    retry_number: int = 1
    topic: str = TASK_COMPLETE_TOPIC
    schema_version: int = 1

    def encode(self) -> bytes:
        return go_json(
            {
                "SchemaVersion": self.schema_version,
                "TaskId": self.task_id,
                "Topic": self.topic,
                "FinalTaskStatus": self.final_task_status,
                "IsRoutingFailure": self.is_routing_failure,
                "AwsAccountId": self.aws_account_id,
                "InstanceId": self.instance_id,
                "Output": self.output,
                "S3Bucket": self.s3_bucket,
                "S3UrlSuffix": self.s3_url_suffix,
                "CwlGroup": self.cwl_group,
                "CwlStream": self.cwl_stream,
                "RetryNumber": self.retry_number,
            }
        )

    def to_frame(self) -> Frame:
        return message_frame(MessageType.AGENT_TASK_COMPLETE, self.encode())


def parse_agent_task_complete(payload: Payload) -> AgentTaskComplete:
    fields = _load_object(payload, "agent_task_complete")
    return AgentTaskComplete(
        task_id=fields.string("TaskId", required=True),
        final_task_status=fields.string("FinalTaskStatus"),
        instance_id=fields.string("InstanceId"),
        output=fields.string("Output"),
        is_routing_failure=fields.boolean("IsRoutingFailure"),
        aws_account_id=fields.string("AwsAccountId"),
        s3_bucket=fields.string("S3Bucket"),
        s3_url_suffix=fields.string("S3UrlSuffix"),
        cwl_group=fields.string("CwlGroup"),
        cwl_stream=fields.string("CwlStream"),
        retry_number=fields.integer("RetryNumber", maximum=UINT32_MAX),
        topic=fields.string("Topic"),
        schema_version=fields.integer("SchemaVersion", maximum=UINT32_MAX),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class AgentTaskAcknowledge:
    """``agent_task_acknowledge`` (gateway → agent); ``message_id`` is the acked frame's MessageId."""

    message_id: str
    task_id: str
    topic: str = TASK_COMPLETE_TOPIC
    schema_version: int = 1

    def encode(self) -> bytes:
        return go_json(
            {
                "SchemaVersion": self.schema_version,
                "MessageId": self.message_id,
                "TaskId": self.task_id,
                "Topic": self.topic,
            }
        )

    def to_frame(self) -> Frame:
        return message_frame(MessageType.AGENT_TASK_ACKNOWLEDGE, self.encode())


def task_acknowledge_for(frame: Frame) -> AgentTaskAcknowledge:
    """The acknowledgement of a received ``agent_task_complete`` frame."""
    complete = parse_agent_task_complete(frame.payload)
    return AgentTaskAcknowledge(
        str(frame.message_id), complete.task_id, complete.topic or TASK_COMPLETE_TOPIC
    )


def parse_agent_task_acknowledge(payload: Payload) -> AgentTaskAcknowledge:
    fields = _load_object(payload, "agent_task_acknowledge")
    return AgentTaskAcknowledge(
        message_id=fields.string("MessageId", required=True),
        task_id=fields.string("TaskId"),
        topic=fields.string("Topic"),
        schema_version=fields.integer("SchemaVersion", maximum=UINT32_MAX),
    )


# -- control channel: Run Command jobs --------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class AgentJob:
    """``agent_job`` (gateway → agent): ``content`` is the SendCommand payload as a JSON string."""

    job_id: str
    content: str
    topic: str
    schema_version: int = 1

    def encode(self) -> bytes:
        return go_json(
            {
                "Content": self.content,
                "JobId": self.job_id,
                "Topic": self.topic,
                "SchemaVersion": self.schema_version,
            }
        )

    def to_frame(self) -> Frame:
        return message_frame(MessageType.AGENT_JOB, self.encode())


def parse_agent_job(payload: Payload) -> AgentJob:
    fields = _load_object(payload, "agent_job")
    return AgentJob(
        job_id=fields.string("JobId", required=True),
        content=fields.string("Content"),
        topic=fields.string("Topic"),
        schema_version=fields.integer("SchemaVersion", maximum=UINT32_MAX),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class AgentJobAck:
    """``agent_job_ack`` (agent → gateway). ``status_code`` "200" is success, "514xx" errors."""

    job_id: str
    acknowledged_message_id: str
    status_code: str = "200"
    error_message: str = ""
    created_date: str = dataclasses.field(default_factory=iso_millis)

    def encode(self) -> bytes:
        return go_json(
            {
                "jobId": self.job_id,
                "acknowledgedMessageId": self.acknowledged_message_id,
                "createdDate": self.created_date,
                "statusCode": self.status_code,
                "errorMessage": self.error_message,
            }
        )

    def to_frame(self) -> Frame:
        return message_frame(MessageType.AGENT_JOB_ACK, self.encode())


def parse_agent_job_ack(payload: Payload) -> AgentJobAck:
    fields = _load_object(payload, "agent_job_ack")
    return AgentJobAck(
        job_id=fields.string("jobId", required=True),
        acknowledged_message_id=fields.string("acknowledgedMessageId"),
        status_code=fields.string("statusCode"),
        error_message=fields.string("errorMessage"),
        created_date=fields.string("createdDate"),
    )


MAX_JOB_REPLY_CONTENT: Final = 120_000


@dataclasses.dataclass(frozen=True, slots=True)
class AgentJobReply:
    """``agent_job_reply`` (agent → gateway): ``content`` is the SendReply payload JSON string."""

    job_id: str
    content: str
    topic: str = "aws.ssm.sendCommand"
    schema_version: int = 1

    def encode(self) -> bytes:
        return go_json(
            {
                "schemaVersion": self.schema_version,
                "jobId": self.job_id,
                "content": self.content,
                "topic": self.topic,
            }
        )

    def to_frame(self) -> Frame:
        return message_frame(MessageType.AGENT_JOB_REPLY, self.encode())


def parse_agent_job_reply(payload: Payload) -> AgentJobReply:
    fields = _load_object(payload, "agent_job_reply")
    content = fields.string("content")
    if len(content) > MAX_JOB_REPLY_CONTENT:
        raise MessageError(f"agent_job_reply: content exceeds {MAX_JOB_REPLY_CONTENT} characters")
    return AgentJobReply(
        job_id=fields.string("jobId", required=True),
        content=content,
        topic=fields.string("topic"),
        schema_version=fields.integer("schemaVersion", maximum=UINT32_MAX),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class AgentJobReplyAck:
    """``agent_job_reply_ack`` (gateway → agent)."""

    job_id: str
    acknowledged_message_id: str

    def encode(self) -> bytes:
        return go_json({"jobId": self.job_id, "acknowledgedMessageId": self.acknowledged_message_id})

    def to_frame(self) -> Frame:
        return message_frame(MessageType.AGENT_JOB_REPLY_ACK, self.encode())


def parse_agent_job_reply_ack(payload: Payload) -> AgentJobReplyAck:
    fields = _load_object(payload, "agent_job_reply_ack")
    return AgentJobReplyAck(
        job_id=fields.string("jobId", required=True),
        acknowledged_message_id=fields.string("acknowledgedMessageId"),
    )


# -- dispatch ---------------------------------------------------------------------------------------

ServiceMessage: TypeAlias = (
    ChannelClosed
    | AgentSessionState
    | Publication
    | InteractiveShell
    | AgentTaskComplete
    | AgentTaskAcknowledge
    | AgentJob
    | AgentJobAck
    | AgentJobReply
    | AgentJobReplyAck
)


def _parse_publication(message_type: str) -> Callable[[Payload], Publication]:
    def parse(payload: Payload) -> Publication:
        # Receivers ignore the body (it may be anything); only the type carries meaning.
        session_id = ""
        try:
            body = json.loads(bytes(payload)) if len(payload) <= MAX_OPEN_FRAME_BYTES else None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            body = None
        if isinstance(body, dict):
            session_id = _Fields(body, message_type).optional_string("SessionId") or ""
        return Publication(message_type, session_id)

    return parse


_PARSERS: Final[dict[str, Callable[[Payload], ServiceMessage]]] = {
    MessageType.CHANNEL_CLOSED: parse_channel_closed,
    MessageType.AGENT_SESSION_STATE: parse_agent_session_state,
    MessageType.START_PUBLICATION: _parse_publication(MessageType.START_PUBLICATION),
    MessageType.PAUSE_PUBLICATION: _parse_publication(MessageType.PAUSE_PUBLICATION),
    MessageType.INTERACTIVE_SHELL: parse_interactive_shell,
    MessageType.AGENT_TASK_COMPLETE: parse_agent_task_complete,
    MessageType.AGENT_TASK_ACKNOWLEDGE: parse_agent_task_acknowledge,
    MessageType.AGENT_JOB: parse_agent_job,
    MessageType.AGENT_JOB_ACK: parse_agent_job_ack,
    MessageType.AGENT_JOB_REPLY: parse_agent_job_reply,
    MessageType.AGENT_JOB_REPLY_ACK: parse_agent_job_reply_ack,
}


def parse_service_message(frame: Frame) -> ServiceMessage:
    """Parse a non-stream frame by its MessageType (stream data and acks are not handled here)."""
    parser = _PARSERS.get(frame.message_type)
    if parser is None:
        raise MessageError(f"no parser for message type {frame.message_type!r}")
    return parser(frame.payload)


HandshakeMessage: TypeAlias = HandshakeRequest | HandshakeResponse | HandshakeComplete | EncryptionChallenge


def parse_stream_json(frame: Frame) -> HandshakeMessage | TerminalSize:
    """Parse a stream frame whose payload type carries JSON (handshake, challenge, Size)."""
    payload_type = frame.payload_type
    if payload_type == PayloadType.HANDSHAKE_REQUEST:
        return parse_handshake_request(frame.payload)
    if payload_type == PayloadType.HANDSHAKE_RESPONSE:
        return parse_handshake_response(frame.payload)
    if payload_type == PayloadType.HANDSHAKE_COMPLETE:
        return parse_handshake_complete(frame.payload)
    if payload_type in (PayloadType.ENC_CHALLENGE_REQUEST, PayloadType.ENC_CHALLENGE_RESPONSE):
        return parse_encryption_challenge(frame.payload)
    if payload_type == PayloadType.SIZE:
        return parse_size(frame.payload)
    raise MessageError(f"payload type {payload_type} does not carry JSON")
