"""How every JSON message is read and written: Go's encoding/json rules, limits, the error type, and
``WireMessage``, the base that gives a flat message its encoder, parser and frame from its fields.

Parsing follows Go's ``encoding/json`` as both real peers use it: a key matches exactly or, failing
that, case-insensitively; unknown keys are ignored; a missing or ``null`` field takes its zero value
unless the field is required.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self, TypeAlias

from openssm.errors import RemoteProtocolError
from openssm.protocol.frames import MAX_FRAME_SIZE, Frame, Payload, PayloadType, go_json
from openssm.protocol.values import Value

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

JsonValue: TypeAlias = Any

MAX_OPEN_FRAME_BYTES: Final = 64 * 1024
MAX_PAYLOAD_BYTES: Final = MAX_FRAME_SIZE
MESSAGE_SCHEMA_VERSION: Final = "1.0"
UINT32_MAX: Final = 0xFFFF_FFFF
INT64_MAX: Final = (1 << 63) - 1
# dataclasses.field(metadata=REQUIRED): the parser refuses the message when this key is missing or empty.
REQUIRED: Final[Mapping[str, bool]] = {"required": True}


class MessageError(RemoteProtocolError, ValueError):
    """A protocol message that is malformed, of the wrong type, or too large."""


def iso_millis(moment: datetime | None = None) -> str:
    """UTC ISO-8601 with milliseconds and ``Z``, as the service writes ``CreatedDate``."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def new_id() -> str:
    return str(uuid.uuid4())


def go_sorted(value: JsonValue) -> JsonValue:
    """``value`` with every object's keys sorted, as Go marshals ``map[string]interface{}``."""
    if isinstance(value, dict):
        return {key: go_sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [go_sorted(item) for item in value]
    return value


# -- strict field access ----------------------------------------------------------------------------


class Fields:
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

    def unknown(self, known: tuple[str, ...]) -> dict[str, JsonValue]:
        """The keys that match none of ``known`` (even case-insensitively), with their values."""
        folded = {key.casefold() for key in known}
        return {key: value for key, value in self._obj.items() if key.casefold() not in folded}

    def _typed(self, key: str, kind: type, expected: str) -> JsonValue:
        """The value of ``key`` when it is null/missing (None) or a ``kind`` (a bool is no int)."""
        value = self.raw(key)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise MessageError(f"{self.what}: {key} must be {expected}, got {type(value).__name__}")
        return value

    def _present(self, key: str, value: JsonValue, required: bool) -> None:
        if required and value is None:
            raise MessageError(f"{self.what}: {key} is missing")

    def string(self, key: str, *, required: bool = False) -> str:
        value: str | None = self._typed(key, str, "a string")
        self._present(key, value, required)
        if required and not value:
            raise MessageError(f"{self.what}: {key} is empty")
        return value or ""

    def optional_string(self, key: str) -> str | None:
        value: str | None = self._typed(key, str, "a string")
        return value

    def integer(self, key: str, *, default: int = 0, minimum: int = 0, maximum: int = INT64_MAX) -> int:
        value: int | None = self._typed(key, int, "an integer")
        if value is None:
            return default
        if not minimum <= value <= maximum:
            raise MessageError(f"{self.what}: {key}={value} is outside {minimum}..{maximum}")
        return value

    def boolean(self, key: str) -> bool:
        return bool(self._typed(key, bool, "a boolean"))

    def object(self, key: str, *, required: bool = False) -> dict[str, JsonValue] | None:
        value: dict[str, JsonValue] | None = self._typed(key, dict, "an object")
        self._present(key, value, required)
        return value

    def array(self, key: str) -> list[JsonValue] | None:
        value: list[JsonValue] | None = self._typed(key, list, "an array")
        return value


def load(data: Payload | str, what: str, limit: int = MAX_PAYLOAD_BYTES) -> JsonValue:
    """Decode one JSON document of at most ``limit`` bytes; anything else is a MessageError."""
    try:
        # A str may hold lone surrogates (JSON escapes decoded by an outer message); they are no
        # UTF-8, so they are no valid JSON text either.
        size = len(data.encode("utf-8") if isinstance(data, str) else data)
    except UnicodeEncodeError as exc:
        raise MessageError(f"{what}: not valid UTF-8 text ({exc.reason})") from exc
    if size > limit:
        raise MessageError(f"{what}: {size} bytes exceeds limit {limit}")
    try:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"{what}: not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise MessageError(f"{what}: JSON nested too deeply") from exc


def fields_of(value: JsonValue, what: str) -> Fields:
    if not isinstance(value, dict):
        raise MessageError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return Fields(value, what)


def load_object(data: Payload | str, what: str, limit: int = MAX_PAYLOAD_BYTES) -> Fields:
    return fields_of(load(data, what, limit), what)


def message_frame(message_type: str, payload: bytes, *, flags: int = 0) -> Frame:
    """A non-stream frame (control-channel messages, channel_closed, session state): seq 0, ptype 0."""
    return Frame(message_type, 0, flags, PayloadType.NONE, payload)


# -- flat messages ----------------------------------------------------------------------------------


def pascal_case(name: str) -> str:
    """``s3_url_suffix`` → ``S3UrlSuffix``: the Go struct field names of most messages."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def pascal_json(message: DataclassInstance) -> dict[str, JsonValue]:
    """A dataclass's fields as one JSON object, each keyed by its ``pascal_case`` name, in field order
    (declared in the Go struct's order)."""
    return {pascal_case(field.name): getattr(message, field.name) for field in dataclasses.fields(message)}


def camel_case(name: str) -> str:
    """``acknowledged_message_id`` → ``acknowledgedMessageId``: the job messages' JSON tags."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


# Field type (as annotated) → how its value is read.
_READERS: Final[dict[str, Callable[[Fields, str, bool], JsonValue]]] = {
    "str": lambda fields, key, required: fields.string(key, required=required),
    "str | None": lambda fields, key, _required: fields.optional_string(key),
    "int": lambda fields, key, _required: fields.integer(key, maximum=UINT32_MAX),
    "bool": lambda fields, key, _required: fields.boolean(key),
}


class _Key(Value):
    __slots__ = ("attribute", "key", "read", "required")
    attribute: str
    key: str
    read: Callable[[Fields, str, bool], JsonValue]
    required: bool

    def __init__(
        self, attribute: str, key: str, read: Callable[[Fields, str, bool], JsonValue], required: bool
    ) -> None:
        object.__setattr__(self, "attribute", attribute)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "read", read)
        object.__setattr__(self, "required", required)


def _field_specs(cls: type) -> dict[str, tuple[str, bool]]:
    """A message class's fields in order, each with its type as annotated and whether it is required:
    a :class:`Value`'s (required: named in ``REQUIRED_FIELDS`` by it or a base) or a dataclass's
    (``metadata=REQUIRED``)."""
    if issubclass(cls, Value):
        annotations: dict[str, object] = {}
        required: set[str] = set()
        for klass in reversed(cls.__mro__):
            annotations.update(vars(klass).get("__annotations__", {}))
            required.update(vars(klass).get("REQUIRED_FIELDS", ()))
        return {name: (str(annotations[name]), name in required) for name in cls._fields}
    return {
        field.name: (str(field.type), bool(field.metadata.get("required")))
        for field in dataclasses.fields(cls)  # type: ignore[arg-type]
    }


_LAYOUTS: dict[type, tuple[_Key, ...]] = {}


class WireMessage:
    """Base of a message whose JSON is one flat object of strings, integers and booleans.

    A subclass is also a :class:`Value` (or a frozen dataclass); each field is one JSON key
    (``KEY_CASE`` of its name unless ``KEYS`` renames it), written in ``ORDER`` (the Go struct's
    field order; the fields' own when empty). Parsing reads every key with its zero value when
    missing; a field named in ``REQUIRED_FIELDS`` (a dataclass's: declared with
    ``metadata=REQUIRED``) must be present and non-empty.
    """

    __slots__ = ()

    MESSAGE_TYPE: ClassVar[str] = ""  # the frame's MessageType, for those sent as frames
    WHAT: ClassVar[str] = ""  # the message's name in errors; its MESSAGE_TYPE when empty
    FLAGS: ClassVar[int] = 0
    KEY_CASE: ClassVar[Callable[[str], str]] = staticmethod(pascal_case)
    KEYS: ClassVar[Mapping[str, str]] = {}
    ORDER: ClassVar[str] = ""  # space-separated attribute names
    REQUIRED_FIELDS: ClassVar[tuple[str, ...]] = ()  # a Value's; each subclass adds its own

    @classmethod
    def _layout(cls) -> tuple[_Key, ...]:
        layout = _LAYOUTS.get(cls)
        if layout is None:
            specs = _field_specs(cls)
            names = cls.ORDER.split() or list(specs)
            assert sorted(names) == sorted(specs), f"{cls.__name__}.ORDER must name every field"
            layout = tuple(
                _Key(name, cls.KEYS.get(name) or cls.KEY_CASE(name), _READERS[specs[name][0]], specs[name][1])
                for name in names
            )
            _LAYOUTS[cls] = layout
        return layout

    def encode(self) -> bytes:
        return go_json({key.key: getattr(self, key.attribute) for key in self._layout()})

    def to_frame(self) -> Frame:
        return message_frame(self.MESSAGE_TYPE, self.encode(), flags=self.FLAGS)

    @classmethod
    def from_fields(cls, fields: Fields) -> Self:
        return cls(**{key.attribute: key.read(fields, key.key, key.required) for key in cls._layout()})

    @classmethod
    def parse(cls, payload: Payload | str, limit: int = MAX_PAYLOAD_BYTES) -> Self:
        return cls.from_fields(load_object(payload, cls.WHAT or cls.MESSAGE_TYPE, limit))
