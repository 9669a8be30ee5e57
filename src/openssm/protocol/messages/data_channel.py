"""The data channel's JSON (``session-manager-protocol.md`` §2): the first text frame of every
WebSocket channel, the handshake (stream payload types 5-9, §2.4), the terminal Size (payload
type 3), and the service messages ``channel_closed``, ``agent_session_state`` and
start/pause_publication."""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Callable, Mapping
from typing import ClassVar, Final, TypeAlias

from openssm.protocol.frames import FLAG_ACK, Frame, MessageType, Payload, PayloadType, go_json
from openssm.protocol.messages.codec import (
    INT64_MAX,
    MAX_OPEN_FRAME_BYTES,
    MESSAGE_SCHEMA_VERSION,
    UINT32_MAX,
    Fields,
    JsonValue,
    MessageError,
    WireMessage,
    fields_of,
    go_sorted,
    iso_millis,
    load_object,
    message_frame,
    new_id,
)
from openssm.protocol.values import Value
from openssm.protocol.versions import AGENT_VERSION, CLIENT_VERSION

MAX_SIZE_BYTES: Final = 4096
# A terminal larger than this is no terminal: a Size beyond it is ignored rather than applied.
MAX_TERMINAL_DIMENSION: Final = 10_000


# -- open frames (WebSocket text) --------------------------------------------------------------


class _OpenFrame(WireMessage, Value):
    """What every channel's first frame carries: the token, and a request id (a new one unless
    given) and schema version (keyword-only, so each kind's own fields follow the token
    positionally)."""

    WHAT: ClassVar[str] = "open frame"
    REQUIRED_FIELDS: ClassVar[tuple[str, ...]] = ("token_value",)

    __slots__ = ("message_schema_version", "request_id", "token_value")
    token_value: str
    request_id: str
    message_schema_version: str

    def __init__(
        self,
        token_value: str,
        *,
        request_id: str | None = None,
        message_schema_version: str = MESSAGE_SCHEMA_VERSION,
    ) -> None:
        object.__setattr__(self, "token_value", token_value)
        object.__setattr__(self, "request_id", new_id() if request_id is None else request_id)
        object.__setattr__(self, "message_schema_version", message_schema_version)

    def to_text(self) -> str:
        return self.encode().decode("utf-8")


class ClientOpen(_OpenFrame):
    """First text frame of a client (plugin) data channel (a new ``client_id`` unless given)."""

    ORDER: ClassVar[str] = "message_schema_version request_id token_value client_id client_version"

    __slots__ = ("client_id", "client_version")
    client_id: str
    client_version: str

    def __init__(
        self,
        token_value: str,
        client_id: str | None = None,
        client_version: str = CLIENT_VERSION,
        *,
        request_id: str | None = None,
        message_schema_version: str = MESSAGE_SCHEMA_VERSION,
    ) -> None:
        super().__init__(token_value, request_id=request_id, message_schema_version=message_schema_version)
        object.__setattr__(self, "client_id", new_id() if client_id is None else client_id)
        object.__setattr__(self, "client_version", client_version)


class AgentDataOpen(_OpenFrame):
    """First text frame of an agent data channel (``ClientInstanceId`` marks it as the agent)."""

    ORDER: ClassVar[str] = "message_schema_version request_id token_value client_instance_id client_id"
    REQUIRED_FIELDS: ClassVar[tuple[str, ...]] = ("client_instance_id",)

    __slots__ = ("client_id", "client_instance_id")
    client_instance_id: str
    client_id: str

    def __init__(
        self,
        token_value: str,
        client_instance_id: str,
        client_id: str = "",
        *,
        request_id: str | None = None,
        message_schema_version: str = MESSAGE_SCHEMA_VERSION,
    ) -> None:
        super().__init__(token_value, request_id=request_id, message_schema_version=message_schema_version)
        object.__setattr__(self, "client_instance_id", client_instance_id)
        object.__setattr__(self, "client_id", client_id)


class ControlOpen(_OpenFrame):
    """First text frame of an agent control channel."""

    ORDER: ClassVar[str] = "cookie message_schema_version request_id token_value agent_version platform_type"

    __slots__ = ("agent_version", "cookie", "platform_type")
    agent_version: str
    platform_type: str
    cookie: str | None

    def __init__(
        self,
        token_value: str,
        agent_version: str = AGENT_VERSION,
        platform_type: str = "linux",
        cookie: str | None = None,
        *,
        request_id: str | None = None,
        message_schema_version: str = MESSAGE_SCHEMA_VERSION,
    ) -> None:
        super().__init__(token_value, request_id=request_id, message_schema_version=message_schema_version)
        object.__setattr__(self, "agent_version", agent_version)
        object.__setattr__(self, "platform_type", platform_type)
        object.__setattr__(self, "cookie", cookie)


OpenFrame: TypeAlias = ClientOpen | AgentDataOpen | ControlOpen


def parse_open_frame(data: str | bytes) -> OpenFrame:
    """Parse the first text frame of any channel.

    ``ClientInstanceId`` means an agent data channel, ``AgentVersion`` a control channel, anything
    else a client. The caller checks that the kind fits the URL it arrived on.
    """
    fields = load_object(data, _OpenFrame.WHAT, MAX_OPEN_FRAME_BYTES)
    kind: type[OpenFrame] = ClientOpen
    if fields.has("ClientInstanceId"):
        kind = AgentDataOpen
    elif fields.has("AgentVersion"):
        kind = ControlOpen
    return kind.from_fields(fields)


# -- handshake (stream payload types 5, 6, 7, 8, 9) --------------------------------------------


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


class RequestedAction(Value):
    """One entry of ``RequestedClientActions``; ``parameters`` is the raw ``ActionParameters``."""

    __slots__ = ("action_type", "parameters")
    action_type: str
    parameters: Mapping[str, JsonValue] | None

    def __init__(self, action_type: str, parameters: Mapping[str, JsonValue] | None) -> None:
        object.__setattr__(self, "action_type", action_type)
        object.__setattr__(self, "parameters", parameters)

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


class HandshakeRequest(Value):
    PAYLOAD_TYPE: ClassVar[PayloadType] = PayloadType.HANDSHAKE_REQUEST

    __slots__ = ("actions", "agent_version")
    agent_version: str
    actions: tuple[RequestedAction, ...]

    def __init__(self, agent_version: str, actions: tuple[RequestedAction, ...]) -> None:
        object.__setattr__(self, "agent_version", agent_version)
        object.__setattr__(self, "actions", actions)

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
    fields = load_object(payload, "HandshakeRequest")
    actions = []
    for index, item in enumerate(fields.array("RequestedClientActions") or []):
        action = fields_of(item, f"HandshakeRequest.RequestedClientActions[{index}]")
        action_type = action.string("ActionType", required=True)
        params = action.object("ActionParameters")
        if action_type == ActionType.SESSION_TYPE:
            session = fields_of(params or {}, f"{action.what}.ActionParameters")
            params = {"SessionType": session.string("SessionType", required=True)} | {
                "Properties": session.raw("Properties")
            }
        actions.append(RequestedAction(action_type, params))
    return HandshakeRequest(fields.string("AgentVersion"), tuple(actions))


class ProcessedAction(Value):
    __slots__ = ("action_result", "action_status", "action_type", "error")
    action_type: str
    action_status: int
    action_result: JsonValue
    error: str

    def __init__(
        self, action_type: str, action_status: int, action_result: JsonValue = None, error: str = ""
    ) -> None:
        object.__setattr__(self, "action_type", action_type)
        object.__setattr__(self, "action_status", action_status)
        object.__setattr__(self, "action_result", action_result)
        object.__setattr__(self, "error", error)

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "ActionType": self.action_type,
            "ActionStatus": self.action_status,
            "ActionResult": self.action_result,
            "Error": self.error,
        }


class HandshakeResponse(Value):
    PAYLOAD_TYPE: ClassVar[PayloadType] = PayloadType.HANDSHAKE_RESPONSE

    __slots__ = ("actions", "client_version", "errors", "extensions")
    client_version: str
    actions: tuple[ProcessedAction, ...]
    errors: tuple[str, ...] | None
    # Extra top-level keys (OpenSSM extensions an OpenSSM agent offered; AWS's agent ignores them).
    extensions: tuple[tuple[str, str], ...]

    def __init__(
        self,
        client_version: str,
        actions: tuple[ProcessedAction, ...],
        errors: tuple[str, ...] | None = None,
        extensions: tuple[tuple[str, str], ...] = (),
    ) -> None:
        object.__setattr__(self, "client_version", client_version)
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "errors", errors)
        object.__setattr__(self, "extensions", extensions)

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


_RESPONSE_KEYS = ("ClientVersion", "ProcessedClientActions", "Errors")


def parse_handshake_response(payload: Payload) -> HandshakeResponse:
    fields = load_object(payload, "HandshakeResponse")
    actions = []
    for index, item in enumerate(fields.array("ProcessedClientActions") or []):
        action = fields_of(item, f"HandshakeResponse.ProcessedClientActions[{index}]")
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
    # Top-level keys beyond AWS's three are OpenSSM extension answers; only text ones mean anything.
    extra = fields.unknown(_RESPONSE_KEYS)
    extensions = tuple((key, value) for key, value in extra.items() if isinstance(value, str))
    return HandshakeResponse(fields.string("ClientVersion"), tuple(actions), errors, extensions)


class HandshakeComplete(Value):
    PAYLOAD_TYPE: ClassVar[PayloadType] = PayloadType.HANDSHAKE_COMPLETE

    __slots__ = ("customer_message", "handshake_time_to_complete")
    handshake_time_to_complete: int  # nanoseconds (Go time.Duration)
    customer_message: str

    def __init__(self, handshake_time_to_complete: int, customer_message: str = "") -> None:
        object.__setattr__(self, "handshake_time_to_complete", handshake_time_to_complete)
        object.__setattr__(self, "customer_message", customer_message)

    def encode(self) -> bytes:
        return go_json(
            {
                "HandshakeTimeToComplete": self.handshake_time_to_complete,
                "CustomerMessage": self.customer_message,
            }
        )


def parse_handshake_complete(payload: Payload) -> HandshakeComplete:
    fields = load_object(payload, "HandshakeComplete")
    return HandshakeComplete(
        fields.integer("HandshakeTimeToComplete", minimum=-INT64_MAX - 1),
        fields.string("CustomerMessage"),
    )


class EncryptionChallenge(Value):
    """EncChallengeRequest (8) / EncChallengeResponse (9): ``{"Challenge": base64}``."""

    __slots__ = ("challenge",)
    challenge: bytes

    def __init__(self, challenge: bytes) -> None:
        object.__setattr__(self, "challenge", challenge)

    def encode(self) -> bytes:
        return go_json({"Challenge": base64.b64encode(self.challenge).decode("ascii")})


def parse_encryption_challenge(payload: Payload) -> EncryptionChallenge:
    fields = load_object(payload, "EncChallenge")
    try:
        raw = base64.b64decode(fields.string("Challenge", required=True), validate=True)
    except binascii.Error as exc:
        raise MessageError(f"EncChallenge: Challenge is not base64 ({exc})") from exc
    return EncryptionChallenge(raw)


# -- Size (payload type 3) and service messages ------------------------------------------------


class SessionState(enum.StrEnum):
    CONNECTED = "Connected"
    TERMINATING = "Terminating"


class TerminalSize(WireMessage, Value):
    PAYLOAD_TYPE: ClassVar[PayloadType] = PayloadType.SIZE
    WHAT: ClassVar[str] = "Size"
    KEY_CASE: ClassVar[Callable[[str], str]] = staticmethod(str)

    __slots__ = ("cols", "rows")
    cols: int
    rows: int

    def __init__(self, cols: int, rows: int) -> None:
        object.__setattr__(self, "cols", cols)
        object.__setattr__(self, "rows", rows)

    @property
    def usable(self) -> bool:
        """Both sides within 1..MAX_TERMINAL_DIMENSION (a zero or huge size resizes nothing)."""
        return 0 < self.cols <= MAX_TERMINAL_DIMENSION and 0 < self.rows <= MAX_TERMINAL_DIMENSION


def parse_size(payload: Payload) -> TerminalSize:
    return TerminalSize.parse(payload, MAX_SIZE_BYTES)


def usable_size(payload: Payload) -> TerminalSize | None:
    """The Size to apply, or None when the payload is no Size or not a usable one (it is ignored)."""
    try:
        size = parse_size(payload)
    except MessageError:
        return None
    return size if size.usable else None


class ChannelClosed(WireMessage, Value):
    """``channel_closed`` from the gateway to a client or agent: the session is over (a new
    ``message_id`` and the time now as ``created_date`` unless given)."""

    WHAT: ClassVar[str] = "channel_closed"
    MESSAGE_TYPE: ClassVar[str] = MessageType.CHANNEL_CLOSED
    ORDER: ClassVar[str] = (
        "message_id created_date destination_id session_id message_type schema_version output"
    )
    REQUIRED_FIELDS: ClassVar[tuple[str, ...]] = ("session_id",)

    __slots__ = (
        "created_date",
        "destination_id",
        "message_id",
        "message_type",
        "output",
        "schema_version",
        "session_id",
    )
    session_id: str
    destination_id: str
    output: str
    message_id: str
    created_date: str
    schema_version: int
    message_type: str

    def __init__(
        self,
        session_id: str,
        destination_id: str = "",
        output: str = "",
        message_id: str | None = None,
        created_date: str | None = None,
        schema_version: int = 1,
        message_type: str = MessageType.CHANNEL_CLOSED.value,
    ) -> None:
        object.__setattr__(self, "session_id", session_id)
        object.__setattr__(self, "destination_id", destination_id)
        object.__setattr__(self, "output", output)
        object.__setattr__(self, "message_id", new_id() if message_id is None else message_id)
        object.__setattr__(self, "created_date", iso_millis() if created_date is None else created_date)
        object.__setattr__(self, "schema_version", schema_version)
        # Written for the Go peers; what a peer sends here means nothing, so it is not kept.
        del message_type
        object.__setattr__(self, "message_type", MessageType.CHANNEL_CLOSED.value)


def parse_channel_closed(payload: Payload) -> ChannelClosed:
    return ChannelClosed.parse(payload)


class AgentSessionState(WireMessage, Value):
    """``agent_session_state`` (agent → gateway on the data channel), sent with Flags 3."""

    WHAT: ClassVar[str] = "agent_session_state"
    MESSAGE_TYPE: ClassVar[str] = MessageType.AGENT_SESSION_STATE
    FLAGS: ClassVar[int] = FLAG_ACK
    KEYS: ClassVar[dict[str, str]] = {"state": "SessionState"}
    ORDER: ClassVar[str] = "schema_version state session_id"
    REQUIRED_FIELDS: ClassVar[tuple[str, ...]] = ("state",)

    __slots__ = ("schema_version", "session_id", "state")
    session_id: str
    state: str
    schema_version: int

    def __init__(self, session_id: str, state: str, schema_version: int = 1) -> None:
        object.__setattr__(self, "session_id", session_id)
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "schema_version", schema_version)


def parse_agent_session_state(payload: Payload) -> AgentSessionState:
    return AgentSessionState.parse(payload)


class Publication(WireMessage, Value):
    """``start_publication`` / ``pause_publication`` (gateway → agent). Receivers ignore the body;
    it is non-empty because the agent cannot read empty payloads."""

    WHAT: ClassVar[str] = "publication"
    ORDER: ClassVar[str] = "schema_version message_type session_id"

    __slots__ = ("message_type", "schema_version", "session_id")
    message_type: str
    session_id: str
    schema_version: int

    def __init__(self, message_type: str, session_id: str = "", schema_version: int = 1) -> None:
        object.__setattr__(self, "message_type", message_type)
        object.__setattr__(self, "session_id", session_id)
        object.__setattr__(self, "schema_version", schema_version)

    def to_frame(self) -> Frame:
        return message_frame(self.message_type, self.encode())


def start_publication(session_id: str) -> Publication:
    return Publication(MessageType.START_PUBLICATION, session_id)


def pause_publication(session_id: str) -> Publication:
    return Publication(MessageType.PAUSE_PUBLICATION, session_id)


def publication_parser(message_type: str) -> Callable[[Payload], Publication]:
    def parse(payload: Payload) -> Publication:
        # Receivers ignore the body (it may be anything); only the type carries meaning.
        session_id = ""
        try:
            body = json.loads(bytes(payload)) if len(payload) <= MAX_OPEN_FRAME_BYTES else None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            body = None
        if isinstance(body, dict):
            session_id = Fields(body, message_type).optional_string("SessionId") or ""
        return Publication(message_type, session_id)

    return parse
