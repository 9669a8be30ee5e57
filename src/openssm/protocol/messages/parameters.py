"""Session ``Parameters`` as the agent substitutes them: name → one scalar string.

The API keeps each parameter as a list of strings; the agent's document substitution needs
scalars (``session-manager-protocol.md`` §4.3, §8 item 9). One rule, used by the gateway that sends
``interactive_shell`` and by the agent and the parser that read it:

- a string is itself;
- a list (the API's form) is its items' texts joined by commas (one item: that item; none: "");
- anything else is written as compact JSON, as amazon-ssm-agent marshals a non-string value it
  substitutes into text (``true``, ``3``, ``null``, ``{"a":"b"}``).
"""

from __future__ import annotations

from collections.abc import Mapping

from openssm.protocol.frames import go_json
from openssm.protocol.messages.codec import JsonValue, MessageError


def scalar_text(value: JsonValue, what: str = "Parameters") -> str:
    """One value as the agent's substitution writes it into text."""
    if isinstance(value, str):
        return value
    try:
        return go_json(value).decode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate escaped in the peer's JSON
        raise MessageError(f"{what}: a value is not valid UTF-8 text ({exc.reason})") from exc


def scalar_parameters(parameters: Mapping[str, JsonValue] | None, what: str = "Parameters") -> dict[str, str]:
    """``parameters`` as name → scalar string (the rule above); anything but an object is an error."""
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise MessageError(f"{what}: Parameters must be an object")
    return {
        str(name): (
            ",".join(scalar_text(item, what) for item in value)
            if isinstance(value, list)
            else scalar_text(value, what)
        )
        for name, value in parameters.items()
    }
