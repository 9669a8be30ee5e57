"""Input validation for JSON 1.1 members, with AWS-style ValidationException messages naming the member."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection
from typing import Any, TypedDict

from openssm.api.errors import ApiError, validation_error


def _fail(member: str, constraint: str, value: Any = None) -> ApiError:
    shown = "null" if value is None else repr(value) if not isinstance(value, str) else f"'{value[:80]}'"
    return validation_error(
        f"1 validation error detected: Value {shown} at '{member}' failed to satisfy constraint: {constraint}"
    )


def _missing(member: str) -> ApiError:
    return _fail(member, "Member must not be null")


class TextLimits(TypedDict, total=False):
    """What a text member may be besides long enough (its ``min_len`` has a default per protocol)."""

    max_len: int | None
    pattern: str | None
    allowed: Collection[str] | None


def checked_text(
    value: str,
    fail: Callable[[str], ApiError],
    *,
    min_len: int = 0,
    max_len: int | None = None,
    pattern: str | None = None,
    allowed: Collection[str] | None = None,
    flags: int = 0,
) -> str:
    """``value`` if it meets the constraints; else ``fail(constraint)`` says which one it broke, in
    AWS's words (each protocol words the rest of the message its own way)."""
    if len(value) < min_len:
        raise fail(f"Member must have length greater than or equal to {min_len}")
    if max_len is not None and len(value) > max_len:
        raise fail(f"Member must have length less than or equal to {max_len}")
    if pattern is not None and not re.fullmatch(pattern, value, flags):
        raise fail(f"Member must satisfy regular expression pattern: {pattern}")
    if allowed is not None and value not in allowed:
        raise fail(f"Member must satisfy enum value set: [{', '.join(allowed)}]")
    return value


def string(
    body: dict[str, Any],
    member: str,
    *,
    required: bool = False,
    min_len: int = 0,
    max_len: int | None = None,
    pattern: str | None = None,
    allowed: tuple[str, ...] | None = None,
    path: str | None = None,
) -> str | None:
    name = path or member
    value = body.get(member)
    if value is None:
        if required:
            raise _missing(name)
        return None
    if not isinstance(value, str):
        raise _fail(name, "Member must be a string", value)
    return checked_text(
        value,
        lambda constraint: _fail(name, constraint, value),
        min_len=min_len,
        max_len=max_len,
        pattern=pattern,
        allowed=allowed,
    )


def paging(
    body: dict[str, Any],
    *,
    minimum: int = 1,
    maximum: int = 50,
    default: int | None = None,
    token_chars: int | None = 2048,
) -> tuple[int, str | None]:
    """``MaxResults`` (``default``, else ``maximum``, when absent) and ``NextToken``."""
    max_results = integer(body, "MaxResults", minimum=minimum, maximum=maximum) or default or maximum
    return max_results, string(body, "NextToken", max_len=token_chars)


def required_string(body: dict[str, Any], member: str, **kwargs: Any) -> str:
    value = string(body, member, required=True, **kwargs)
    assert value is not None
    return value


def integer(
    body: dict[str, Any], member: str, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    value = body.get(member)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(member, "Member must be an integer", value)
    if minimum is not None and value < minimum:
        raise _fail(member, f"Member must have value greater than or equal to {minimum}", value)
    if maximum is not None and value > maximum:
        raise _fail(member, f"Member must have value less than or equal to {maximum}", value)
    return value


def timestamp(body: dict[str, Any], member: str) -> dt.datetime | None:
    """JSON 1.1 timestamps are epoch seconds (botocore sends a number)."""
    value = body.get(member)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(member, "Member must be a timestamp in epoch seconds", value)
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise _fail(member, "Member must be a valid timestamp", value) from exc


def object_list(body: dict[str, Any], member: str, *, max_items: int | None = None) -> list[dict[str, Any]]:
    value = body.get(member)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _fail(member, "Member must be a list of structures", value)
    if max_items is not None and len(value) > max_items:
        raise _fail(member, f"Member must have length less than or equal to {max_items}", value)
    return value


def string_list(value: Any, path: str, *, min_items: int = 0) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail(path, "Member must be a list of strings", value)
    if len(value) < min_items:
        raise _fail(path, f"Member must have length greater than or equal to {min_items}", value)
    return value


def string_list_map(body: dict[str, Any], member: str) -> dict[str, list[str]]:
    value = body.get(member)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(member, "Member must be a map of string to list of strings", value)
    return {str(key): string_list(items, f"{member}.{key}") for key, items in value.items()}


def tags(body: dict[str, Any], member: str = "Tags") -> dict[str, str]:
    result: dict[str, str] = {}
    for index, item in enumerate(object_list(body, member, max_items=1000)):
        path = f"{member}.{index + 1}"
        key = required_string(item, "Key", min_len=1, max_len=128, path=f"{path}.member.Key")
        result[key] = required_string(item, "Value", max_len=256, path=f"{path}.member.Value")
    return result


def epoch(value: dt.datetime | None) -> float | None:
    """Timestamps in JSON 1.1 responses: epoch seconds as a number."""
    return None if value is None else round(value.timestamp(), 3)


def key_value_filters(
    body: dict[str, Any], *, allowed_keys: Collection[str], max_items: int, max_value_len: int
) -> list[tuple[str, str]]:
    """``Filters`` of ``{"key", "value"}`` objects (DescribeSessions, ListCommands…) as (key, value)."""
    result = []
    for index, item in enumerate(object_list(body, "Filters", max_items=max_items)):
        path = f"Filters.{index + 1}.member"
        key = required_string(item, "key", path=f"{path}.key")
        value = required_string(item, "value", min_len=1, max_len=max_value_len, path=f"{path}.value")
        if key not in allowed_keys:
            raise ApiError("InvalidFilterKey", f"The filter key {key} is not valid.")
        result.append((key, value))
    return result


def filter_date(value: str, *, error_code: str) -> dt.datetime:
    """An ISO-8601 filter value (``Z`` or an offset; none means UTC); ``error_code`` if it is not one."""
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ApiError(error_code, f"Filter value {value!r} is not an ISO-8601 date.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
