"""IAM Query parameters: form members checked with IAM's constraints and IAM's ``ValidationError``
wording, Query lists (``Name.member.N``), paging (``MaxItems``/``Marker``) and policy documents."""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, Final, Unpack

from openssm.api.errors import ApiError
from openssm.api.pagination import page
from openssm.api.validation import TextLimits, checked_text
from openssm.iam import Policy, parse_policy
from openssm.iam.policy import PolicyKind
from openssm.store.iam.holders import HolderType

NAME_PATTERN: Final = r"[\w+=,.@-]+"
PATH_PATTERN: Final = r"(/)|(/[\u0021-\u007E]+/)"
PATH_PREFIX_PATTERN: Final = r"/[\u0021-\u007E]*"
NAME_MAX: Final[dict[str, int]] = {"user": 64, "group": 128, "role": 64, "policy": 128}
HOLDER_MEMBERS: Final[dict[HolderType, str]] = {"user": "UserName", "group": "GroupName", "role": "RoleName"}


def validation(member: str, value: str | None, constraint: str) -> ApiError:
    shown = "null" if value is None else f"'{value[:128]}'"
    return ApiError(
        "ValidationError",
        f"1 validation error detected: Value {shown} at '{member[:1].lower() + member[1:]}' "
        f"failed to satisfy constraint: {constraint}",
    )


def param(
    form: Mapping[str, str],
    name: str,
    *,
    required: bool = False,
    min_len: int = 1,
    **limits: Unpack[TextLimits],
) -> str | None:
    value = form.get(name)
    if value is None:
        if required:
            raise validation(name, None, "Member must not be null")
        return None
    fail = functools.partial(validation, name, value)
    return checked_text(value, fail, min_len=min_len, flags=re.ASCII, **limits)


def required(form: Mapping[str, str], name: str, **kwargs: Any) -> str:
    value = param(form, name, required=True, **kwargs)
    assert value is not None
    return value


def entity_name(form: Mapping[str, str], member: str, kind: str, *, optional: bool = False) -> str | None:
    return param(form, member, required=not optional, max_len=NAME_MAX[kind], pattern=NAME_PATTERN)


def required_name(form: Mapping[str, str], member: str, kind: str) -> str:
    value = entity_name(form, member, kind)
    assert value is not None
    return value


def holder_name(form: Mapping[str, str], holder_type: HolderType) -> str:
    """``UserName``, ``GroupName`` or ``RoleName``."""
    return required_name(form, HOLDER_MEMBERS[holder_type], holder_type)


def path_param(form: Mapping[str, str]) -> str:
    return param(form, "Path", max_len=512, pattern=PATH_PATTERN) or "/"


def path_prefix(form: Mapping[str, str]) -> str:
    return param(form, "PathPrefix", max_len=512, pattern=PATH_PREFIX_PATTERN) or "/"


def boolean(form: Mapping[str, str], name: str) -> bool:
    value = param(form, name, min_len=0, allowed=("true", "false", "True", "False"))
    return value is not None and value.lower() == "true"


def arn_param(form: Mapping[str, str], name: str) -> str:
    return required(form, name, min_len=20, max_len=2048)


def _indexed(form: Mapping[str, str], prefix: str) -> dict[int, str]:
    """``<prefix>.<N><rest>`` parameters grouped by N (Query lists are 1-based)."""
    found: dict[int, str] = {}
    head = prefix + "."
    for key in form:
        if key.startswith(head):
            number, _, _ = key[len(head) :].partition(".")
            if number.isdigit():
                found[int(number)] = f"{head}{number}"
    return dict(sorted(found.items()))


def members(form: Mapping[str, str], name: str) -> list[str]:
    """A Query list of strings: ``Name.member.1=…&Name.member.2=…``."""
    return [form[key] for key in _indexed(form, f"{name}.member").values() if key in form]


def member_prefixes(form: Mapping[str, str], name: str) -> list[str]:
    """The ``Name.member.N`` prefixes of a Query list of structures."""
    return list(_indexed(form, f"{name}.member").values())


def at_least_one(values: Sequence[Any], member: str) -> None:
    if not values:
        raise validation(member, None, "Member must have length greater than or equal to 1")


def paginate(form: Mapping[str, str], items: Sequence[Any], scope: str, key: str) -> dict[str, Any]:
    max_items_text = param(form, "MaxItems", pattern=r"[0-9]+")
    max_items = int(max_items_text) if max_items_text else 100
    if not 1 <= max_items <= 1000:
        raise validation("MaxItems", max_items_text, "Member must have value between 1 and 1000")
    chunk, marker = page(items, param(form, "Marker", max_len=320), max_items, scope)
    return {key: chunk, "IsTruncated": marker is not None, "Marker": marker}


def policy_document(
    form: Mapping[str, str], member: str, *, kind: PolicyKind = "identity"
) -> tuple[str, Policy]:
    """The JSON text (form-decoded already) and its parsed policy; MalformedPolicyDocument if invalid."""
    text = required(form, member, max_len=131072)
    return text, parse_policy(text, kind=kind)


def encoded(document: str) -> str:
    """Policy documents in IAM responses are URL-encoded JSON (botocore decodes them)."""
    return urllib.parse.quote(document, safe="")
