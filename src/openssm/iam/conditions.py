"""Condition operators: parsing of operator names and values, and evaluation against a context.

Semantics (AWS "IAM JSON policy elements: Condition operators"):
- AND across operators and across keys of one operator; OR across the values of one key.
- A negated operator (``StringNotEquals``, ``NotIpAddress``, …) holds when the request value
  matches *none* of the policy values.
- Key absent: a positive operator is false, a negated one true; ``…IfExists`` makes it true.
- ``Null``: ``"true"`` holds iff the key is absent, ``"false"`` iff it is present.
- ``ForAnyValue:`` holds iff some request value satisfies the operator (false if absent/empty);
  ``ForAllValues:`` iff every request value does (true if absent/empty).
"""

from __future__ import annotations

import abc
import base64
import binascii
import dataclasses
import datetime as dt
import decimal
import functools
import ipaddress
import operator
import re
from collections.abc import Callable, Sequence
from typing import Literal

from openssm.errors import OpenSSMError
from openssm.iam.arn import arn_pattern_regex
from openssm.iam.glob import chunks_to_regex, compile_regex
from openssm.iam.variables import (
    Context,
    PolicyText,
    Template,
    has_variables,
    parse_template,
    render_chunks,
    render_text,
)

SetQualifier = Literal["ForAnyValue", "ForAllValues"] | None


class ConditionSyntaxError(OpenSSMError, ValueError):
    """An unknown operator or a policy value the operator cannot use."""


class ValueMatcher(abc.ABC):
    """The policy values of one key under one operator family (positive sense)."""

    @abc.abstractmethod
    def matches(self, request_value: str, context: Context) -> bool:
        """True iff *request_value* matches at least one policy value."""


# -- string ---------------------------------------------------------------------------------------
class StringMatcher(ValueMatcher):
    def __init__(self, templates: Sequence[Template], *, ignore_case: bool) -> None:
        self._templates = tuple(templates)
        self._ignore_case = ignore_case
        # Values without variables are compared through a set (the common case).
        static = all(len(t) == 1 and isinstance(t[0], PolicyText) for t in templates)
        self._static = frozenset(self._fold(render_text(t, {}) or "") for t in templates) if static else None

    def _fold(self, text: str) -> str:
        return text.casefold() if self._ignore_case else text

    def matches(self, request_value: str, context: Context) -> bool:
        wanted = self._fold(request_value)
        if self._static is not None:
            return wanted in self._static
        for template in self._templates:
            value = render_text(template, context)
            if value is not None and self._fold(value) == wanted:
                return True
        return False


class GlobMatcher(ValueMatcher):
    """``StringLike`` (glob) and ``ArnLike``/``ArnEquals`` (ARN component globs)."""

    def __init__(self, templates: Sequence[Template], *, arn: bool) -> None:
        self._templates = tuple(templates)
        self._to_regex: Callable[..., str] = arn_pattern_regex if arn else chunks_to_regex

    def matches(self, request_value: str, context: Context) -> bool:
        for template in self._templates:
            chunks = render_chunks(template, context)
            if chunks is None:
                continue
            if compile_regex(self._to_regex(chunks)).fullmatch(request_value) is not None:
                return True
        return False


# -- numeric and date -------------------------------------------------------------------------------
_COMPARE: dict[str, Callable[[decimal.Decimal, decimal.Decimal], bool]] = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "LessThanEquals": operator.le,
    "GreaterThan": operator.gt,
    "GreaterThanEquals": operator.ge,
}
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


@functools.lru_cache(maxsize=4096)
def parse_number(text: str) -> decimal.Decimal | None:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    return decimal.Decimal(text)


@functools.lru_cache(maxsize=4096)
def parse_date(text: str) -> decimal.Decimal | None:
    """Epoch seconds (as a Decimal) of an ISO 8601 date/date-time or of an epoch-seconds number."""
    text = text.strip()
    number = parse_number(text)
    if number is not None and "-" not in text[1:]:
        return number
    candidate = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        if len(candidate) == 10:
            moment = dt.datetime.combine(dt.date.fromisoformat(candidate), dt.time(), dt.UTC)
        else:
            moment = dt.datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return decimal.Decimal(str(moment.timestamp()))


class OrderedMatcher(ValueMatcher):
    def __init__(
        self,
        values: Sequence[decimal.Decimal],
        comparison: Callable[[decimal.Decimal, decimal.Decimal], bool],
        parse: Callable[[str], decimal.Decimal | None],
    ) -> None:
        self._values = tuple(values)
        self._comparison = comparison
        self._parse = parse

    def matches(self, request_value: str, context: Context) -> bool:
        value = self._parse(request_value)
        if value is None:
            return False
        return any(self._comparison(value, policy_value) for policy_value in self._values)


# -- bool, binary, ip -------------------------------------------------------------------------------
class BoolMatcher(ValueMatcher):
    """A policy value that is neither ``true`` nor ``false`` (say ``"ture"``) never matches.

    Policy values are literal: policy variables are refused with Bool (``check_variables``)."""

    def __init__(self, values: Sequence[str]) -> None:
        self._values = frozenset(value.lower() for value in values)

    def matches(self, request_value: str, context: Context) -> bool:
        wanted = request_value.lower()
        return wanted in ("true", "false") and wanted in self._values


def _decode_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


class BinaryMatcher(ValueMatcher):
    def __init__(self, values: Sequence[bytes]) -> None:
        self._values = frozenset(values)

    def matches(self, request_value: str, context: Context) -> bool:
        decoded = _decode_base64(request_value)
        return decoded is not None and decoded in self._values


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class IpMatcher(ValueMatcher):
    def __init__(self, networks: Sequence[Network]) -> None:
        self._networks = tuple(networks)

    def matches(self, request_value: str, context: Context) -> bool:
        address = parse_address(request_value)
        if address is None:
            return False
        return any(address.version == net.version and address in net for net in self._networks)


@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A request's IP address; IPv4-mapped IPv6 (a dual-stack listener's view of IPv4) as IPv4."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# -- operator table ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class OperatorSpec:
    family: str  # String, Numeric, Date, Bool, Binary, IpAddress, Arn, Null
    variant: str  # Equals, EqualsIgnoreCase, Like, LessThan, … ("" for Bool/Null/Ip)
    negated: bool


def _build_operator_table() -> dict[str, OperatorSpec]:
    table: dict[str, OperatorSpec] = {}
    for variant in ("Equals", "EqualsIgnoreCase", "Like"):
        table[f"String{variant}"] = OperatorSpec("String", variant, False)
        table[f"StringNot{variant}"] = OperatorSpec("String", variant, True)
    for family in ("Numeric", "Date"):
        for variant in _COMPARE:
            table[f"{family}{variant}"] = OperatorSpec(family, variant, False)
        table[f"{family}NotEquals"] = OperatorSpec(family, "Equals", True)
    table["Bool"] = OperatorSpec("Bool", "", False)
    table["BinaryEquals"] = OperatorSpec("Binary", "Equals", False)
    table["IpAddress"] = OperatorSpec("IpAddress", "", False)
    table["NotIpAddress"] = OperatorSpec("IpAddress", "", True)
    for variant in ("Equals", "Like"):
        table[f"Arn{variant}"] = OperatorSpec("Arn", variant, False)
        table[f"ArnNot{variant}"] = OperatorSpec("Arn", variant, True)
    table["Null"] = OperatorSpec("Null", "", False)
    return table


OPERATORS = _build_operator_table()
_OPERATORS_FOLDED = {name.lower(): name for name in OPERATORS}
_QUALIFIERS = {"foranyvalue": "ForAnyValue", "forallvalues": "ForAllValues"}


@dataclasses.dataclass(frozen=True, slots=True)
class ConditionOperator:
    name: str  # canonical spelling, e.g. "ForAnyValue:StringLikeIfExists"
    base: str  # "StringLike"
    spec: OperatorSpec
    if_exists: bool
    qualifier: SetQualifier


def parse_operator(name: str) -> ConditionOperator:
    qualifier: SetQualifier = None
    rest = name
    if ":" in name:
        prefix, _, rest = name.partition(":")
        canonical_prefix = _QUALIFIERS.get(prefix.lower())
        if canonical_prefix is None:
            raise ConditionSyntaxError(
                f"Unknown condition set operator {prefix!r} in {name!r} (use ForAnyValue or ForAllValues)"
            )
        qualifier = "ForAnyValue" if canonical_prefix == "ForAnyValue" else "ForAllValues"
    if_exists = False
    base = _OPERATORS_FOLDED.get(rest.lower())
    if base is None and rest.lower().endswith("ifexists"):
        base = _OPERATORS_FOLDED.get(rest[: -len("IfExists")].lower())
        if_exists = base is not None
    if base is None:
        raise ConditionSyntaxError(f"Unknown condition operator {name!r}")
    spec = OPERATORS[base]
    if spec.family == "Null" and (if_exists or qualifier):
        raise ConditionSyntaxError(f"Condition operator {name!r}: Null takes no IfExists or set operator")
    canonical = (f"{qualifier}:" if qualifier else "") + base + ("IfExists" if if_exists else "")
    return ConditionOperator(canonical, base, spec, if_exists, qualifier)


def build_matcher(op: ConditionOperator, key: str, values: Sequence[str], *, variables: bool) -> ValueMatcher:
    """Parse the policy values of one key; raises ConditionSyntaxError for values that cannot work."""
    spec = op.spec
    family = spec.family

    def templates() -> list[Template]:
        return [parse_template(value, variables=variables) for value in values]

    if family == "String":
        if spec.variant == "Like":
            return GlobMatcher(templates(), arn=False)
        return StringMatcher(templates(), ignore_case=spec.variant == "EqualsIgnoreCase")
    if family == "Arn":
        return GlobMatcher(templates(), arn=True)
    if family == "Bool":
        return BoolMatcher(values)
    if family in ("Numeric", "Date"):
        parse = parse_number if family == "Numeric" else parse_date
        parsed: list[decimal.Decimal] = []
        for value in values:
            number = parse(value)
            if number is None:
                kind = "a number" if family == "Numeric" else "an ISO 8601 date or epoch seconds"
                raise ConditionSyntaxError(f"{op.name} value {value!r} for key {key!r} is not {kind}")
            parsed.append(number)
        return OrderedMatcher(parsed, _COMPARE[spec.variant], parse)
    if family == "Binary":
        decoded: list[bytes] = []
        for value in values:
            data = _decode_base64(value)
            if data is None:
                raise ConditionSyntaxError(f"{op.name} value {value!r} for key {key!r} is not base64")
            decoded.append(data)
        return BinaryMatcher(decoded)
    if family == "IpAddress":
        networks: list[Network] = []
        for value in values:
            try:
                networks.append(ipaddress.ip_network(value.strip(), strict=False))
            except ValueError:
                raise ConditionSyntaxError(
                    f"{op.name} value {value!r} for key {key!r} is not an IP address or CIDR block"
                ) from None
        return IpMatcher(networks)
    raise ConditionSyntaxError(f"{op.name} has no value matcher")  # Null is handled by Condition


def _absent_result(op: ConditionOperator) -> bool:
    """What the operator says when the key is absent (or its value set is empty)."""
    if op.if_exists or op.qualifier == "ForAllValues":
        return True
    if op.qualifier == "ForAnyValue":
        return False
    return op.spec.negated


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    """One key under one operator, e.g. ``"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}``."""

    operator: ConditionOperator
    key: str  # lowercased
    values: tuple[str, ...]  # as written (bools/numbers turned into their JSON text)
    matcher: ValueMatcher | None  # None for Null
    # Derived from the operator once, because holds() runs for every statement of every request.
    absent: bool = False
    negated: bool = False

    def holds(self, context: Context) -> bool:
        request_values = context.get(self.key)
        matcher = self.matcher
        if matcher is None:  # Null: a non-boolean policy value never holds
            present = bool(request_values)
            return any(
                (value.lower() == "true" and not present) or (value.lower() == "false" and present)
                for value in self.values
            )
        if not request_values:
            return self.absent
        qualifier = self.operator.qualifier
        negated = self.negated
        if qualifier is None:
            if len(request_values) == 1:
                return matcher.matches(request_values[0], context) != negated
            return any(matcher.matches(value, context) for value in request_values) != negated
        satisfied = (matcher.matches(value, context) != negated for value in request_values)
        return any(satisfied) if qualifier == "ForAnyValue" else all(satisfied)


VARIABLE_FAMILIES = frozenset({"String", "Arn"})


def check_variables(op: ConditionOperator, values: Sequence[str], *, variables: bool) -> None:
    """Refuse policy variables in the values of an operator that is not a String or ARN operator.

    AWS: "You can use a policy variable for Condition values in any condition that involves the
    string operators or the ARN operators. [...] You can't use a policy variable with other
    operators, such as Numeric, Date, Boolean, Binary, IP Address, or Null operators." (IAM User
    Guide, reference_policies_variables; Access Analyzer: "Invalid variable for operator").
    """
    if not variables or op.spec.family in VARIABLE_FAMILIES:
        return
    for value in values:
        if has_variables(parse_template(value, variables=True)):
            raise ConditionSyntaxError(
                f"Invalid variable for operator {op.name}: policy variables can only be used with String "
                f"and ARN operators, not in {value!r}"
            )


def make_condition(operator_name: str, key: str, values: Sequence[str], *, variables: bool) -> Condition:
    op = parse_operator(operator_name)
    check_variables(op, values, variables=variables)
    matcher = None if op.spec.family == "Null" else build_matcher(op, key, values, variables=variables)
    return Condition(op, key.lower(), tuple(values), matcher, _absent_result(op), op.spec.negated)
