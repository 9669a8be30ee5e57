"""``--parameters`` as the AWS CLI accepts it for StartSession: JSON, or shorthand
(``portNumber=3389,localPortNumber=13389``, ``host=db,portNumber=5432``, ``command=[ls,-l]``)."""

from __future__ import annotations

import json
from typing import Any, Final

from openssm.errors import OpenSSMError

MAX_PARAMETERS_TEXT: Final = 64 * 1024


class ParameterError(OpenSSMError, ValueError):
    """The text is neither a JSON object nor valid shorthand; the message says where."""


def parse_parameters(text: str) -> dict[str, list[str]]:
    """Parameters as StartSession wants them: name → list of strings."""
    if len(text) > MAX_PARAMETERS_TEXT:
        raise ParameterError("parameters are too long")
    stripped = text.strip()
    if not stripped:
        return {}
    if stripped.startswith("{"):
        return _from_json(stripped)
    return _from_shorthand(stripped)


def _from_json(text: str) -> dict[str, list[str]]:
    try:
        value: Any = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ParameterError(f"parameters are not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ParameterError("parameters must be a JSON object")
    result: dict[str, list[str]] = {}
    for name, item in value.items():
        items = item if isinstance(item, list) else [item]
        if not all(isinstance(part, str | int | float) and not isinstance(part, bool) for part in items):
            raise ParameterError(f"parameter {name} must be a string or a list of strings")
        result[name] = [str(part) for part in items]
    return result


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes; a backslash escapes the next character."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    quote = ""
    chars = iter(text)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif quote:
            if char == quote:
                quote = ""
            else:
                current.append(char)
        elif char in "\"'":
            quote = char
        elif char == "[":
            depth += 1
            current.append(char)
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ParameterError(f"unbalanced ']' in {text!r}")
            current.append(char)
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if quote or depth:
        raise ParameterError(f"unterminated quote or bracket in {text!r}")
    parts.append("".join(current))
    return parts


def _from_shorthand(text: str) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    last: str | None = None
    for part in _split_top_level(text):
        name, sep, value = part.partition("=")
        if not sep:
            # ``key=a,b`` continues the previous key's list, as AWS CLI shorthand does.
            if last is None:
                raise ParameterError(f"expected name=value, got {part!r}")
            result[last].append(part.strip())
            continue
        name = name.strip()
        if not name:
            raise ParameterError(f"missing parameter name in {part!r}")
        value = value.strip()
        if value.startswith("[") and value.endswith("]"):
            inner = value[1:-1].strip()
            result[name] = [item.strip() for item in _split_top_level(inner)] if inner else []
        else:
            result[name] = [value]
        last = name
    return result
