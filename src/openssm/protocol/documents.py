"""Session documents: the AWS built-ins as data, parsing, parameter validation and substitution.

Documents are plain JSON-shaped dicts (``{"schemaVersion":"1.0","sessionType":…,"parameters":…,
"inputs":…,"properties":…}``, ``session-manager-protocol.md`` §4.5) because that is what travels to
the agent inside ``interactive_shell``. The API validates a StartSession's parameters with
:func:`validate_parameters` (name → list of strings, defaults filled in); the agent substitutes the
scalar values into the document with :func:`resolve`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from re import _parser as re_parser  # type: ignore[attr-defined]  # typeshed leaves it out
from typing import Any, Final

import regex

from openssm.errors import OpenSSMError
from openssm.protocol.messages import SessionType, scalar_parameters

Document = dict[str, Any]

MAX_DOCUMENT_BYTES: Final = 64 * 1024  # SSM's own document size limit
MAX_PARAMETERS: Final = 100
MAX_VALUES_PER_PARAMETER: Final = 100
MAX_VALUE_CHARS: Final = 8 * 1024
MAX_NESTING: Final = 32
# allowedPattern is a caller's regular expression run on the server, so both its compiling and its
# matching are bounded: ``regex`` unrolls each repetition's minimum count when it compiles, so the
# pattern's size with its repetitions unrolled is capped; a match that backtracks past the time
# limit is a refusal, not a hung event loop. (The time limit bounds CPU, it is no clock of the core.)
MAX_PATTERN_CHARS: Final = 4096
MAX_PATTERN_UNROLLED: Final = 20_000
PATTERN_SECONDS: Final = 0.1

SCHEMA_VERSION: Final = "1.0"
DEFAULT_SESSION_DOCUMENT: Final = "SSM-SessionManagerRunShell"
SESSION_TYPES: Final = frozenset(item.value for item in SessionType)
PARAMETER_TYPES: Final = frozenset({"String", "StringList", "Integer", "Boolean", "StringMap", "MapList"})
SINGLE_VALUE_TYPES: Final = frozenset({"String", "Integer", "Boolean"})
PARAMETER_NAME: Final = re.compile(r"[A-Za-z0-9_.\-]{1,128}")

# 1-65535 without leading zeros.
PORT_PATTERN: Final = (
    r"^([1-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
)
# 0-65535: 0 asks the client to pick a free local port.
LOCAL_PORT_PATTERN: Final = (
    r"^([0-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
)
# A DNS name (labels of letters, digits, hyphens; optional trailing dot), an IPv4 address
# (covered by the DNS form) or an IPv6 address. Quotes, spaces and shell characters never match.
HOST_PATTERN: Final = (
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*\.?$"
    r"|^[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}$"
)

_PLACEHOLDER: Final = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")


class DocumentError(OpenSSMError, ValueError):
    """An invalid document or parameter; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# -- the AWS built-in session documents -------------------------------------------------------------


def _port_parameter(description: str, default: str, *, local: bool = False) -> dict[str, Any]:
    return {
        "type": "String",
        "description": description,
        "allowedPattern": LOCAL_PORT_PATTERN if local else PORT_PATTERN,
        "default": default,
    }


def _per_platform(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {platform: dict(settings) for platform in ("windows", "linux", "macos")}


_COMMAND_PARAMETER: Final = {"type": "String", "description": "The command to run on the instance"}


def _session_document(
    session_type: SessionType, description: str, *, parameters: dict[str, Any], properties: dict[str, Any]
) -> Document:
    """A built-in session document of ``session_type`` (schema 1.0)."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "description": description,
        "sessionType": session_type.value,
        "parameters": parameters,
        "properties": properties,
    }


def _port_forwarding(description: str, destination: str, *, host: dict[str, Any] | None = None) -> Document:
    """AWS-StartPortForwardingSession, or with a ``host`` parameter …ToRemoteHost: a local port
    (``localPortNumber``) forwarded to ``portNumber`` on ``destination``."""
    parameters = {} if host is None else {"host": host}
    parameters["portNumber"] = _port_parameter(f"(Optional) Port on {destination} to connect to", "80")
    parameters["localPortNumber"] = _port_parameter(
        "(Optional) Local port to listen on; 0 picks a free port", "0", local=True
    )
    properties = {
        "portNumber": "{{ portNumber }}",
        "type": "LocalPortForwarding",
        "localPortNumber": "{{ localPortNumber }}",
    }
    if host is not None:
        properties["host"] = "{{ host }}"
    return _session_document(SessionType.PORT, description, parameters=parameters, properties=properties)


_BUILTINS: Final[dict[str, Document]] = {
    DEFAULT_SESSION_DOCUMENT: {
        "schemaVersion": SCHEMA_VERSION,
        "description": "Session Manager preferences for this account and region",
        "sessionType": SessionType.STANDARD_STREAM.value,
        "inputs": {
            "s3BucketName": "",
            "s3KeyPrefix": "",
            "s3EncryptionEnabled": False,
            "cloudWatchLogGroupName": "",
            "cloudWatchEncryptionEnabled": False,
            "cloudWatchStreamingEnabled": False,
            "kmsKeyId": "",
            "runAsEnabled": False,
            "runAsDefaultUser": "",
            "idleSessionTimeout": "20",
            "maxSessionDuration": "",
            "shellProfile": {"windows": "", "linux": ""},
        },
    },
    "AWS-StartPortForwardingSession": _port_forwarding(
        "Forward a local port to a port on the managed node", "the managed node"
    ),
    "AWS-StartPortForwardingSessionToRemoteHost": _port_forwarding(
        "Forward a local port to a port on a host reachable from the managed node",
        "the remote host",
        host={
            "type": "String",
            "description": "(Required) DNS name or IP address of the remote host",
            "allowedPattern": HOST_PATTERN,
        },
    ),
    "AWS-StartSSHSession": _session_document(
        SessionType.PORT,
        "Tunnel an SSH connection to the managed node",
        parameters={"portNumber": _port_parameter("(Optional) Port of the SSH server", "22")},
        properties={"portNumber": "{{ portNumber }}"},
    ),
    "AWS-StartInteractiveCommand": _session_document(
        SessionType.INTERACTIVE_COMMANDS,
        "Run one interactive command on the managed node",
        parameters={"command": dict(_COMMAND_PARAMETER)},
        properties=_per_platform({"commands": "{{ command }}", "runAsElevated": False}),
    ),
    "AWS-StartNonInteractiveCommand": _session_document(
        SessionType.NON_INTERACTIVE_COMMANDS,
        "Run one command on the managed node without a terminal",
        parameters={"command": dict(_COMMAND_PARAMETER)},
        properties=_per_platform(
            {
                "commands": "{{ command }}",
                "runAsElevated": False,
                "separateOutputStream": False,
                "stdOutSeparatorPrefix": "",
                "stdErrSeparatorPrefix": "",
            }
        ),
    ),
}


def builtin_documents() -> dict[str, Document]:
    """The AWS-owned session documents by name (fresh copies: callers may modify them)."""
    return copy.deepcopy(_BUILTINS)


# -- parsing and validating documents ---------------------------------------------------------------


def _load_yaml(text: str | bytes) -> Any:
    """YAML by a SafeLoader that refuses aliases (they let a small document expand exponentially).
    PyYAML is imported here, on the first YAML document: the agent, which resolves documents sent
    as JSON, never loads it (``bench/bench_agent_memory.py``)."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()  # type: ignore[no-untyped-call]  # types-PyYAML leaves it untyped
                raise DocumentError(
                    "content", f"YAML aliases are not allowed (line {event.start_mark.line + 1})"
                )
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - safe loader subclass
    except yaml.YAMLError as exc:
        raise DocumentError("content", f"not valid YAML: {exc}") from exc


def _json_shaped(value: Any, path: str, depth: int = 0) -> Any:
    """Check a loaded value holds only JSON types (YAML can produce dates, sets, non-string keys)."""
    if depth > MAX_NESTING:
        raise DocumentError(path, "nested too deeply")
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise DocumentError(f"{path}.{key}", "keys must be strings")
            out[key] = _json_shaped(item, f"{path}.{key}", depth + 1)
        return out
    if isinstance(value, list):
        return [_json_shaped(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise DocumentError(path, f"unsupported value of type {type(value).__name__}")


def parse_document(text: str | bytes, format: str = "JSON") -> Document:
    """Parse and validate a session document written as JSON or YAML (``DocumentFormat``)."""
    size = len(text.encode("utf-8") if isinstance(text, str) else text)
    if size > MAX_DOCUMENT_BYTES:
        raise DocumentError("content", f"{size} bytes exceeds the {MAX_DOCUMENT_BYTES}-byte limit")
    kind = format.upper()
    try:
        if kind == "JSON":
            loaded = json.loads(text)
        elif kind == "YAML":
            loaded = _load_yaml(text)
        else:
            raise DocumentError("DocumentFormat", f"unsupported format {format!r} (JSON or YAML)")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DocumentError("content", f"not valid {kind}: {exc}") from exc
    except RecursionError as exc:
        raise DocumentError("content", "nested too deeply") from exc
    return validate_document(_json_shaped(loaded, "content"))


def _check_parameter_definition(name: str, definition: Any) -> None:
    field = f"parameters.{name}"
    if not PARAMETER_NAME.fullmatch(name):
        raise DocumentError(field, "parameter names use letters, digits, '_', '-' and '.' (1-128)")
    if not isinstance(definition, dict):
        raise DocumentError(field, "must be an object")
    kind = definition.get("type")
    if kind not in PARAMETER_TYPES:
        raise DocumentError(f"{field}.type", f"must be one of {', '.join(sorted(PARAMETER_TYPES))}")
    if not isinstance(definition.get("description", ""), str):
        raise DocumentError(f"{field}.description", "must be a string")
    pattern = definition.get("allowedPattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise DocumentError(f"{field}.allowedPattern", "must be a string")
        _compiled_pattern(f"{field}.allowedPattern", pattern)
    allowed = definition.get("allowedValues")
    if allowed is not None and not (isinstance(allowed, list) and all(isinstance(v, str) for v in allowed)):
        raise DocumentError(f"{field}.allowedValues", "must be a list of strings")
    for bound in ("minChars", "maxChars", "minItems", "maxItems"):
        limit = definition.get(bound)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise DocumentError(f"{field}.{bound}", "must be a non-negative integer")
    if "default" in definition:
        _default_values(name, definition)


def validate_document(document: Any) -> Document:
    """Check a session document's shape; returns a normalised copy (``schemaVersion`` as "1.0")."""
    if not isinstance(document, dict):
        raise DocumentError("content", "a document must be an object")
    schema = document.get("schemaVersion")
    if isinstance(schema, float | int) and not isinstance(schema, bool) and float(schema) == 1.0:
        schema = SCHEMA_VERSION  # YAML reads an unquoted 1.0 as a number
    if schema != SCHEMA_VERSION:
        raise DocumentError("schemaVersion", 'session documents use schemaVersion "1.0"')
    session_type = document.get("sessionType")
    if not isinstance(session_type, str) or session_type not in SESSION_TYPES:
        raise DocumentError("sessionType", f"must be one of {', '.join(sorted(SESSION_TYPES))}")
    if not isinstance(document.get("description", ""), str):
        raise DocumentError("description", "must be a string")
    parameters = document.get("parameters", {})
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise DocumentError("parameters", "must be an object")
    if len(parameters) > MAX_PARAMETERS:
        raise DocumentError("parameters", f"at most {MAX_PARAMETERS} parameters")
    for name, definition in parameters.items():
        _check_parameter_definition(name, definition)
    for section in ("inputs", "properties"):
        if document.get(section) is not None and not isinstance(document[section], dict):
            raise DocumentError(section, "must be an object")
    normalised = copy.deepcopy(document)
    normalised["schemaVersion"] = SCHEMA_VERSION
    return normalised


# -- parameters -------------------------------------------------------------------------------------


# CPython's own parser of ``re`` syntax (which ``regex`` extends): its tree says what compiling unrolls.
_RE_PARSER: Any = re_parser
_REPEATS: Final = frozenset({"MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"})


def _unrolled_size(items: Any) -> int:
    """Nodes of a parsed pattern once every repetition's minimum count is written out."""
    total = 0
    for op, av in items:
        name = str(op)
        if name in _REPEATS:
            total += max(av[0], 1) * _unrolled_size(av[2])
        elif name == "SUBPATTERN":
            total += _unrolled_size(av[3])
        elif name == "BRANCH":
            total += sum(_unrolled_size(branch) for branch in av[1])
        elif name in ("ASSERT", "ASSERT_NOT"):
            total += _unrolled_size(av[1])
        elif name == "ATOMIC_GROUP":
            total += _unrolled_size(av)
        elif name == "GROUPREF_EXISTS":
            total += _unrolled_size(av[1]) + (_unrolled_size(av[2]) if av[2] else 0)
        else:
            total += 1
        if total > MAX_PATTERN_UNROLLED:
            break
    return total


@lru_cache(maxsize=256)
def _checked_pattern(pattern: str) -> regex.Pattern[str] | str:
    """The compiled pattern, or why it is refused."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return f"longer than {MAX_PATTERN_CHARS} characters"
    try:
        size = _unrolled_size(_RE_PARSER.parse(pattern))
    except (re.error, OverflowError, RecursionError) as exc:  # OverflowError: a count past C's long
        return f"invalid regular expression: {exc}"
    if size > MAX_PATTERN_UNROLLED:
        return f"too large once its repetitions are counted out (more than {MAX_PATTERN_UNROLLED} items)"
    try:
        return regex.compile(pattern)
    except (regex.error, OverflowError, RecursionError) as exc:
        return f"invalid regular expression: {exc}"


def _compiled_pattern(field: str, pattern: str) -> regex.Pattern[str]:
    checked = _checked_pattern(pattern)
    if isinstance(checked, str):
        raise DocumentError(field, checked)
    return checked


def _definitions(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    parameters = document.get("parameters") or {}
    return parameters if isinstance(parameters, dict) else {}


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _default_values(name: str, definition: Mapping[str, Any]) -> list[str]:
    default = definition["default"]
    if isinstance(default, list):
        if not all(isinstance(item, str | int | float | bool) for item in default):
            raise DocumentError(f"parameters.{name}.default", "list defaults hold scalar values")
        return [_as_text(item) for item in default]
    if isinstance(default, dict):
        if definition.get("type") != "StringMap":
            raise DocumentError(f"parameters.{name}.default", "only StringMap defaults are objects")
        return [_as_text(default)]
    if default is None:
        return []
    return [_as_text(default)]


def _check_value(name: str, definition: Mapping[str, Any], value: str) -> None:
    kind = definition.get("type")
    if len(value) > MAX_VALUE_CHARS:
        raise DocumentError(name, f"value longer than {MAX_VALUE_CHARS} characters")
    if kind == "Integer" and not re.fullmatch(r"-?[0-9]{1,18}", value):
        raise DocumentError(name, f"{value!r} is not an integer")
    if kind == "Boolean" and value.lower() not in ("true", "false"):
        raise DocumentError(name, f"{value!r} is not true or false")
    pattern = definition.get("allowedPattern")
    if isinstance(pattern, str):
        try:
            matched = _compiled_pattern(f"{name}.allowedPattern", pattern).search(
                value, timeout=PATTERN_SECONDS
            )
        except TimeoutError as exc:
            raise DocumentError(
                name, f"the allowed pattern {pattern} took too long to match the value"
            ) from exc
        if matched is None:
            raise DocumentError(name, f"{value!r} does not match the allowed pattern {pattern}")
    allowed = definition.get("allowedValues")
    if isinstance(allowed, list) and value not in allowed:
        raise DocumentError(name, f"{value!r} is not one of the allowed values")
    _check_bounds(
        name, definition, len(value), "Chars", "shorter than {} characters", "longer than {} characters"
    )


def _check_bounds(
    name: str, definition: Mapping[str, Any], size: int, of: str, too_small: str, too_large: str
) -> None:
    """A parameter's ``min<of>``/``max<of>`` (``minChars``, ``maxItems`` …) against ``size``; the
    messages are formats of the bound."""
    low, high = definition.get(f"min{of}"), definition.get(f"max{of}")
    if isinstance(low, int) and size < low:
        raise DocumentError(name, too_small.format(low))
    if isinstance(high, int) and size > high:
        raise DocumentError(name, too_large.format(high))


def validate_parameters(document: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, list[str]]:
    """StartSession ``Parameters`` (name → list of strings) checked against the document.

    Unknown names, wrong types, pattern mismatches and missing required parameters raise
    :class:`DocumentError` naming the parameter. Returns every document parameter, defaults filled in.
    """
    definitions = _definitions(document)
    for name in params:
        if name not in definitions:
            raise DocumentError(name, "is not a parameter of this document")
    result: dict[str, list[str]] = {}
    for name, definition in definitions.items():
        if name in params:
            values = params[name]
            if not isinstance(values, list | tuple) or not all(isinstance(v, str) for v in values):
                raise DocumentError(name, "values must be a list of strings")
            values = list(values)
        elif "default" in definition:
            values = _default_values(name, definition)
        else:
            raise DocumentError(name, "is required")
        kind = definition.get("type")
        if len(values) > MAX_VALUES_PER_PARAMETER:
            raise DocumentError(name, f"at most {MAX_VALUES_PER_PARAMETER} values")
        if kind in SINGLE_VALUE_TYPES and len(values) != 1:
            raise DocumentError(name, f"a {kind} parameter takes exactly one value")
        _check_bounds(
            name, definition, len(values), "Items", "needs at least {} values", "takes at most {} values"
        )
        for value in values:
            _check_value(name, definition, value)
        result[name] = values
    return result


def agent_parameters(validated: Mapping[str, list[str]]) -> dict[str, str]:
    """The scalar ``Parameters`` the agent needs (§4.3): one value as-is, several joined by commas."""
    return scalar_parameters(validated)


# -- substitution -----------------------------------------------------------------------------------


def _substitute(value: Any, values: Mapping[str, Any]) -> Any:
    if isinstance(value, dict):
        return {key: _substitute(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, values) for item in value]
    if not isinstance(value, str) or "{{" not in value:
        return value
    whole = _PLACEHOLDER.fullmatch(value)
    if whole is not None and whole.group(1) in values:
        return values[whole.group(1)]

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return _as_text(values[name]) if name in values else match.group(0)

    # One pass: substituted text is never scanned again for placeholders.
    return _PLACEHOLDER.sub(replace, value)


def resolve(document: Mapping[str, Any], parameters: Mapping[str, Any]) -> Document:
    """A copy of ``document`` with ``{{ name }}`` replaced in ``properties`` and ``inputs``.

    Values come from ``parameters`` (scalar strings, as the agent receives them), falling back to
    the document's defaults. A string that is exactly one placeholder becomes the value as-is;
    embedded placeholders are replaced textually. Unknown names and ``{{ssm:…}}`` references are
    left untouched (they are never looked up).
    """
    values: dict[str, Any] = {}
    for name, definition in _definitions(document).items():
        if isinstance(definition, dict) and "default" in definition:
            values[name] = definition["default"]
    values.update(parameters)
    resolved: Document = copy.deepcopy(dict(document))
    for section in ("properties", "inputs"):
        if section in resolved:
            resolved[section] = _substitute(resolved[section], values)
    return resolved


def placeholders(document: Mapping[str, Any]) -> set[str]:
    """Names referenced as ``{{ name }}`` in ``properties`` and ``inputs``."""

    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)
        elif isinstance(value, str):
            yield value

    found: set[str] = set()
    for section in ("properties", "inputs"):
        for text in strings(document.get(section)):
            found.update(match.group(1) for match in _PLACEHOLDER.finditer(text))
    return found


# -- Session Manager preferences --------------------------------------------------------------------

IDLE_TIMEOUT_RANGE: Final = (1, 60)
MAX_DURATION_RANGE: Final = (1, 1440)
DEFAULT_IDLE_TIMEOUT: Final = 20


@dataclasses.dataclass(frozen=True, slots=True)
class Preferences:
    """The ``inputs`` of a session document (SSM-SessionManagerRunShell preferences)."""

    idle_session_timeout: int = DEFAULT_IDLE_TIMEOUT  # minutes
    max_session_duration: int | None = None  # minutes; None = unlimited
    run_as_enabled: bool = False
    run_as_default_user: str = ""
    shell_profile_linux: str = ""
    shell_profile_windows: str = ""
    s3_bucket_name: str = ""
    s3_key_prefix: str = ""
    s3_encryption_enabled: bool = False
    cloudwatch_log_group_name: str = ""
    cloudwatch_encryption_enabled: bool = False
    cloudwatch_streaming_enabled: bool = False
    kms_key_id: str = ""


def _minutes(inputs: Mapping[str, Any], key: str, bounds: tuple[int, int]) -> int | None:
    raw = inputs.get(key)
    field = f"inputs.{key}"
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise DocumentError(field, "must be a number of minutes")
    if isinstance(raw, str):
        if not re.fullmatch(r"\s*[0-9]{1,9}\s*", raw):
            raise DocumentError(field, f"{raw!r} is not a whole number of minutes")
        raw = int(raw)
    elif isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if not isinstance(raw, int):
        raise DocumentError(field, "must be a number of minutes")
    low, high = bounds
    if not low <= raw <= high:
        raise DocumentError(field, f"{raw} is outside {low}-{high} minutes")
    return raw


def _flag(inputs: Mapping[str, Any], key: str) -> bool:
    raw = inputs.get(key)
    if raw is None or raw == "":
        return False
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise DocumentError(f"inputs.{key}", 'must be true or false (or the strings "true"/"false")')


def _text(inputs: Mapping[str, Any], key: str, path: str = "inputs") -> str:
    raw = inputs.get(key)
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise DocumentError(f"{path}.{key}", "must be a string")
    return raw


def preferences_from_document(document: Mapping[str, Any]) -> Preferences:
    """Read and check session preferences from a document's ``inputs`` (missing keys take defaults)."""
    inputs = document.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise DocumentError("inputs", "must be an object")
    profile = inputs.get("shellProfile") or {}
    if not isinstance(profile, dict):
        raise DocumentError("inputs.shellProfile", "must be an object with linux/windows strings")
    idle = _minutes(inputs, "idleSessionTimeout", IDLE_TIMEOUT_RANGE)
    return Preferences(
        idle_session_timeout=DEFAULT_IDLE_TIMEOUT if idle is None else idle,
        max_session_duration=_minutes(inputs, "maxSessionDuration", MAX_DURATION_RANGE),
        run_as_enabled=_flag(inputs, "runAsEnabled"),
        run_as_default_user=_text(inputs, "runAsDefaultUser"),
        shell_profile_linux=_text(profile, "linux", "inputs.shellProfile"),
        shell_profile_windows=_text(profile, "windows", "inputs.shellProfile"),
        s3_bucket_name=_text(inputs, "s3BucketName"),
        s3_key_prefix=_text(inputs, "s3KeyPrefix"),
        s3_encryption_enabled=_flag(inputs, "s3EncryptionEnabled"),
        cloudwatch_log_group_name=_text(inputs, "cloudWatchLogGroupName"),
        cloudwatch_encryption_enabled=_flag(inputs, "cloudWatchEncryptionEnabled"),
        cloudwatch_streaming_enabled=_flag(inputs, "cloudWatchStreamingEnabled"),
        kms_key_id=_text(inputs, "kmsKeyId"),
    )


# -- AWS CLI --parameters ---------------------------------------------------------------------------

_SHORTHAND_KEY: Final = re.compile(r"\s*([A-Za-z0-9_.\-]+)\s*=")
MAX_CLI_PARAMETERS_CHARS: Final = 64 * 1024


class _Shorthand:
    """Reader for the CLI shorthand ``k=v1,v2,k2=v3`` / ``k=[v1,v2]`` / quoted values."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str) -> DocumentError:
        return DocumentError("parameters", f"{message} at character {self.pos + 1}")

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def at_key(self) -> bool:
        return _SHORTHAND_KEY.match(self.text, self.pos) is not None

    def key(self) -> str:
        match = _SHORTHAND_KEY.match(self.text, self.pos)
        if match is None:
            raise self.error("expected name=value")
        self.pos = match.end()
        return match.group(1)

    def quoted(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if char == quote:
                return "".join(out)
            out.append(char)
        raise self.error("unterminated quoted value")

    def value(self, stops: str) -> str:
        self.skip_spaces()
        if self.pos < len(self.text) and self.text[self.pos] in "'\"":
            text = self.quoted()
            self.skip_spaces()
            return text
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in stops:
            self.pos += 1
        return self.text[start : self.pos].strip()

    def values(self) -> list[str]:
        self.skip_spaces()
        if self.pos < len(self.text) and self.text[self.pos] == "[":
            self.pos += 1
            items: list[str] = []
            self.skip_spaces()
            if self.pos < len(self.text) and self.text[self.pos] == "]":
                self.pos += 1
                return items
            while True:
                items.append(self.value(",]"))
                if self.pos >= len(self.text):
                    raise self.error("missing ']'")
                closing = self.text[self.pos] == "]"
                self.pos += 1
                if closing:
                    return items
        items = [self.value(",")]
        # ``k=a,b`` continues the list until the next ``name=``.
        while self.pos < len(self.text) and self.text[self.pos] == ",":
            self.pos += 1
            if self.at_key():
                self.pos -= 1
                break
            items.append(self.value(","))
        return items

    def parse(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        while True:
            self.skip_spaces()
            if self.pos >= len(self.text):
                return result
            name = self.key()
            result.setdefault(name, []).extend(self.values())
            self.skip_spaces()
            if self.pos >= len(self.text):
                return result
            if self.text[self.pos] != ",":
                raise self.error("expected ','")
            self.pos += 1


def parse_cli_parameters(text: str) -> dict[str, list[str]]:
    """``--parameters`` as the AWS CLI accepts it: JSON ``{"portNumber":["22"]}`` or shorthand
    ``portNumber=3389, localPortNumber=13389`` (``k=a,b`` and ``k=[a,b]`` give lists)."""
    if len(text) > MAX_CLI_PARAMETERS_CHARS:
        raise DocumentError("parameters", f"longer than {MAX_CLI_PARAMETERS_CHARS} characters")
    if text.lstrip().startswith("{"):
        try:
            loaded = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise DocumentError("parameters", f"not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise DocumentError("parameters", "must be a JSON object")
        result: dict[str, list[str]] = {}
        for name, value in loaded.items():
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(item, str) for item in items):
                raise DocumentError(name, "values must be strings or lists of strings")
            result[name] = list(items)
        return result
    return _Shorthand(text).parse()
