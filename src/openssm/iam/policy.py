"""Policy documents: strict parsing and validation into a compiled, immutable form.

``parse_policy`` rejects what AWS's validator rejects, with a message saying what is wrong and in
which statement; the result is ready for fast evaluation (globs compiled once).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from openssm.errors import OpenSSMError
from openssm.iam.arn import arn_pattern_component_count, arn_pattern_regex
from openssm.iam.conditions import Condition, ConditionSyntaxError, make_condition
from openssm.iam.glob import compile_regex, glob_to_regex
from openssm.iam.variables import (
    MULTIVALUED_KEYS,
    Context,
    Template,
    VariableRef,
    VariableSyntaxError,
    has_variables,
    parse_template,
    render_chunks,
)

VERSION_2012 = "2012-10-17"
VERSION_2008 = "2008-10-17"
MANAGED_POLICY_MAX_CHARS = 6144  # AWS quota, whitespace not counted

Effect = Literal["Allow", "Deny"]
PolicyKind = Literal["identity", "trust"]

_TOP_LEVEL_KEYS = frozenset({"Version", "Id", "Statement"})
_STATEMENT_KEYS = frozenset(
    {
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    }
)
_SID = re.compile(r"[A-Za-z0-9]*")
_ACTION = re.compile(r"[A-Za-z0-9_\-]+:[A-Za-z0-9_\-*?]+")
# "<vendor>:<key>"; a web identity provider's keys are prefixed with its URL, which may hold dots,
# a port and a path: "idp.example.internal:8443/realms/ops:aud".
_CONDITION_KEY = re.compile(r"[A-Za-z0-9_.\-/]+(?::[A-Za-z0-9_.\-/]+)*:\S+")

# Keys AWS documents as single-valued (and MULTIVALUED_KEYS), for validator warnings.
SINGLE_VALUED_KEYS = frozenset(
    {
        "aws:sourceip",
        "aws:username",
        "aws:userid",
        "aws:principalarn",
        "aws:principalaccount",
        "aws:principaltype",
        "aws:currenttime",
        "aws:epochtime",
        "aws:securetransport",
        "aws:requestedregion",
        "aws:useragent",
        "aws:referer",
        "aws:multifactorauthpresent",
        "aws:multifactorauthage",
        "aws:tokenissuetime",
        "aws:federatedprovider",
        "sts:rolesessionname",
        "aws:resourceaccount",
        "ssm:sessiondocumentaccesscheck",
    }
)


class MalformedPolicyDocument(OpenSSMError, ValueError):
    """The policy text is not a valid policy; the message says what is wrong."""


class _JsonNumber(str):
    """A JSON number kept as its source text (condition values are strings to IAM)."""


def _reject_constant(name: str) -> Any:
    raise MalformedPolicyDocument(f"Syntax errors in policy: {name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # A silently dropped duplicate could hide a Deny: refuse the document instead.
            raise MalformedPolicyDocument(f"Syntax errors in policy: duplicate key {key!r}")
        result[key] = value
    return result


def policy_size(text: str) -> int:
    """Characters counted against the IAM size quotas (whitespace is not counted)."""
    return sum(1 for char in text if not char.isspace())


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceSet:
    """``Resource`` or ``NotResource`` entries, compiled."""

    patterns: tuple[str, ...]
    templates: tuple[Template, ...]
    static: re.Pattern[str] | None  # one alternation when no entry has variables

    @classmethod
    def build(cls, patterns: Sequence[str], *, variables: bool) -> ResourceSet:
        templates = tuple(parse_template(p, variables=variables) for p in patterns)
        static = None
        if not any(has_variables(t) for t in templates):
            sources = [arn_pattern_regex(render_chunks(t, {}) or ()) for t in templates]
            static = compile_regex("|".join(f"(?:{s})" for s in sources))
        return cls(tuple(patterns), templates, static)

    def matches(self, resource: str, context: Context) -> bool:
        if self.static is not None:
            return self.static.fullmatch(resource) is not None
        for template in self.templates:
            chunks = render_chunks(template, context)
            # An unresolvable variable makes the entry match nothing.
            if chunks is not None and compile_regex(arn_pattern_regex(chunks)).fullmatch(resource):
                return True
        return False


@dataclasses.dataclass(frozen=True, slots=True)
class Statement:
    index: int  # position in the policy, from 0
    sid: str | None
    effect: Effect
    actions: tuple[str, ...]
    not_action: bool
    resources: ResourceSet | None  # None only in trust policies
    not_resource: bool
    conditions: tuple[Condition, ...]
    action_regex: re.Pattern[str] = dataclasses.field(repr=False)
    principal: Any = None  # trust policies only, as written
    not_principal: bool = False

    def action_matches(self, action: str) -> bool:
        return (self.action_regex.fullmatch(action) is not None) != self.not_action

    def resource_matches(self, resource: str, context: Context) -> bool:
        if self.resources is None:
            return True
        return self.resources.matches(resource, context) != self.not_resource

    def conditions_hold(self, context: Context) -> bool:
        for condition in self.conditions:
            if not condition.holds(context):
                return False
        return True

    def applies(self, action: str, resource: str, context: Context) -> bool:
        return (
            self.action_matches(action)
            and self.resource_matches(resource, context)
            and self.conditions_hold(context)
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    version: str | None
    id: str | None
    statements: tuple[Statement, ...]
    warnings: tuple[str, ...] = ()
    # Statements whose Action/NotAction covers an action, remembered per action: the same parsed
    # policy (see parse_policy's cache) answers the same few actions request after request.
    _by_action: dict[str, tuple[Statement, ...]] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def variables_enabled(self) -> bool:
        return self.version == VERSION_2012

    def statements_for(self, action: str) -> tuple[Statement, ...]:
        found = self._by_action.get(action)
        if found is None:
            found = tuple(s for s in self.statements if s.action_matches(action))
            if len(self._by_action) >= _ACTION_MEMORY:
                self._by_action.clear()
            self._by_action[action] = found
        return found


_ACTION_MEMORY = 256


def parse_policy(text: str, *, kind: PolicyKind = "identity") -> Policy:
    """Parse and validate a policy document (identity policy, or a role's trust policy)."""
    if not isinstance(text, str):
        raise MalformedPolicyDocument("The policy document must be JSON text")
    if len(text) <= _CACHEABLE_CHARS:
        return _parse_cached(text, kind)
    return _parse(text, kind)


# Policies are immutable once parsed, and the server reads the same few texts from the store on
# every request: remember them (bounded, and only texts of IAM-quota size).
_CACHEABLE_CHARS = 16384


@functools.lru_cache(maxsize=512)
def _parse_cached(text: str, kind: PolicyKind) -> Policy:
    return _parse(text, kind)


def _parse(text: str, kind: PolicyKind) -> Policy:
    try:
        document = json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_float=_JsonNumber,
            parse_int=_JsonNumber,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as exc:
        raise MalformedPolicyDocument(
            f"Syntax errors in policy: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise MalformedPolicyDocument("Syntax errors in policy: nested too deeply") from None
    return _Parser(kind).policy(document)


class _Parser:
    def __init__(self, kind: PolicyKind) -> None:
        self.kind = kind
        self.warnings: list[str] = []
        self.variables = False

    def policy(self, document: Any) -> Policy:
        if not isinstance(document, dict):
            raise MalformedPolicyDocument("The policy document must be a JSON object")
        unknown = sorted(set(document) - _TOP_LEVEL_KEYS)
        if unknown:
            raise MalformedPolicyDocument(f"Unknown field {unknown[0]!r} at the top level of the policy")
        version = document.get("Version")
        if version is not None and (
            isinstance(version, _JsonNumber) or version not in (VERSION_2012, VERSION_2008)
        ):
            raise MalformedPolicyDocument(
                f'The policy Version must be "{VERSION_2012}" or "{VERSION_2008}", not {json.dumps(version)}'
            )
        self.variables = version == VERSION_2012
        policy_id = document.get("Id")
        if policy_id is not None and (not isinstance(policy_id, str) or isinstance(policy_id, _JsonNumber)):
            raise MalformedPolicyDocument("The policy Id must be a string")
        if "Statement" not in document:
            raise MalformedPolicyDocument("Missing required field Statement")
        raw = document["Statement"]
        raw_statements = [raw] if isinstance(raw, dict) else raw
        if not isinstance(raw_statements, list) or not raw_statements:
            raise MalformedPolicyDocument("Statement must be a statement object or a non-empty list of them")
        statements = tuple(self.statement(i, s) for i, s in enumerate(raw_statements))
        sids = [s.sid for s in statements if s.sid]
        duplicates = sorted({sid for sid in sids if sids.count(sid) > 1})
        if duplicates:
            raise MalformedPolicyDocument(
                f"Statement IDs (SID) in a single policy must be unique: {duplicates[0]!r} is repeated"
            )
        return Policy(version, policy_id, statements, tuple(self.warnings))

    def statement(self, index: int, raw: Any) -> Statement:
        where = f"statement {index}"
        if not isinstance(raw, dict):
            raise MalformedPolicyDocument(f"{_cap(where)} must be a JSON object")
        sid = raw.get("Sid")
        if sid is not None:
            if not isinstance(sid, str) or isinstance(sid, _JsonNumber):
                raise MalformedPolicyDocument(f"Sid of {where} must be a string")
            if self.kind == "identity" and not _SID.fullmatch(sid):
                raise MalformedPolicyDocument(
                    f"Statement IDs (SID) must be alpha-numeric ([0-9A-Za-z]*): {sid!r} in {where}"
                )
            where = f"statement {index} ({sid})"
        unknown = sorted(set(raw) - _STATEMENT_KEYS)
        if unknown:
            raise MalformedPolicyDocument(f"Unknown field {unknown[0]!r} in {where}")
        if "Effect" not in raw:
            raise MalformedPolicyDocument(f"Missing required field Effect in {where}")
        effect = raw["Effect"]
        if effect not in ("Allow", "Deny") or isinstance(effect, _JsonNumber):
            raise MalformedPolicyDocument(
                f'Effect in {where} must be "Allow" or "Deny", not {json.dumps(effect)}'
            )
        principal, not_principal = self.principal(raw, where)
        actions, not_action = self.actions(raw, where)
        resources, not_resource = self.resources(raw, where)
        conditions = self.conditions(raw.get("Condition"), where) if "Condition" in raw else ()
        action_source = "|".join(f"(?:{glob_to_regex(a)})" for a in actions)
        return Statement(
            index=index,
            sid=sid,
            effect="Allow" if effect == "Allow" else "Deny",
            actions=actions,
            not_action=not_action,
            resources=resources,
            not_resource=not_resource,
            conditions=conditions,
            principal=principal,
            not_principal=not_principal,
            action_regex=compile_regex(action_source, True),
        )

    def principal(self, raw: Mapping[str, Any], where: str) -> tuple[Any, bool]:
        has_principal, has_not = "Principal" in raw, "NotPrincipal" in raw
        if self.kind == "identity":
            if has_principal or has_not:
                raise MalformedPolicyDocument(
                    f"Policy document should not specify a principal ({where} has "
                    f"{'Principal' if has_principal else 'NotPrincipal'}; identity policies apply to "
                    "whoever they are attached to)"
                )
            return None, False
        if has_principal and has_not:
            raise MalformedPolicyDocument(f"{_cap(where)} has both Principal and NotPrincipal")
        if not has_principal and not has_not:
            raise MalformedPolicyDocument(f"Missing required field Principal in {where} of the trust policy")
        value = raw["Principal" if has_principal else "NotPrincipal"]
        if not (value == "*" or isinstance(value, dict)):
            raise MalformedPolicyDocument(
                f'Principal in {where} must be "*" or an object such as {{"AWS": …}}'
            )
        return value, has_not

    def _string_list(self, value: Any, field: str, where: str) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise MalformedPolicyDocument(
                f"{field} in {where} must be a string or a non-empty list of strings"
            )
        for item in items:
            if not isinstance(item, str) or isinstance(item, _JsonNumber):
                raise MalformedPolicyDocument(
                    f"{field} in {where} must contain only strings, not {json.dumps(item)}"
                )
        return tuple(items)

    def actions(self, raw: Mapping[str, Any], where: str) -> tuple[tuple[str, ...], bool]:
        has_action, has_not = "Action" in raw, "NotAction" in raw
        if has_action and has_not:
            raise MalformedPolicyDocument(f"{_cap(where)} has both Action and NotAction; use only one")
        if not has_action and not has_not:
            raise MalformedPolicyDocument(
                f"Policy statement must contain actions: {where} has no Action or NotAction"
            )
        field = "Action" if has_action else "NotAction"
        actions = self._string_list(raw[field], field, where)
        for action in actions:
            if "${" in action:
                raise MalformedPolicyDocument(
                    f"Policy variables are not allowed in {field}: {action!r} in {where}"
                )
            if action != "*" and not _ACTION.fullmatch(action):
                raise MalformedPolicyDocument(
                    f'{field} {action!r} in {where} must be "*" or "<service>:<action>", '
                    "prefaced by a vendor such as ssm, iam or ec2"
                )
        return actions, has_not

    def resources(self, raw: Mapping[str, Any], where: str) -> tuple[ResourceSet | None, bool]:
        has_resource, has_not = "Resource" in raw, "NotResource" in raw
        if has_resource and has_not:
            raise MalformedPolicyDocument(f"{_cap(where)} has both Resource and NotResource; use only one")
        if not has_resource and not has_not:
            if self.kind == "trust":
                return None, False
            raise MalformedPolicyDocument(
                f"Policy statement must contain resources: {where} has no Resource or NotResource"
            )
        field = "Resource" if has_resource else "NotResource"
        patterns = self._string_list(raw[field], field, where)
        for pattern in patterns:
            try:
                template = parse_template(pattern, variables=self.variables)
            except VariableSyntaxError as exc:
                raise MalformedPolicyDocument(f"{field} in {where}: {exc}") from None
            if pattern == "*":
                continue
            if _variable_before_resource_part(template):
                raise MalformedPolicyDocument(
                    f"{field} {pattern} in {where}: a policy variable can be used only in the resource "
                    "portion of the ARN, after the fifth colon"
                )
            components = arn_pattern_component_count(render_chunks(template, {}) or _placeholder(template))
            if not pattern.startswith("arn:") or components < 6:
                raise MalformedPolicyDocument(
                    f"{field} {pattern} in {where} must be in ARN format "
                    '(arn:partition:service:region:account:resource) or "*"'
                )
        return ResourceSet.build(patterns, variables=self.variables), has_not

    def conditions(self, raw: Any, where: str) -> tuple[Condition, ...]:
        if not isinstance(raw, dict):
            raise MalformedPolicyDocument(f"Condition in {where} must be an object of operators")
        conditions: list[Condition] = []
        for operator_name, block in raw.items():
            if not isinstance(block, dict):
                raise MalformedPolicyDocument(
                    f"Condition operator {operator_name!r} in {where} must map condition keys to values"
                )
            for key, value in block.items():
                if not _CONDITION_KEY.fullmatch(key):
                    raise MalformedPolicyDocument(
                        f"Condition key {key!r} in {where} must be prefaced by a vendor, e.g. aws:SourceIp"
                    )
                values = self._condition_values(value, operator_name, key, where)
                try:
                    condition = make_condition(operator_name, key, values, variables=self.variables)
                except (ConditionSyntaxError, VariableSyntaxError) as exc:
                    raise MalformedPolicyDocument(f"{exc} in {where}") from None
                self._warn_about_key_kind(condition, where)
                conditions.append(condition)
        return tuple(conditions)

    def _condition_values(self, value: Any, operator_name: str, key: str, where: str) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise MalformedPolicyDocument(
                f"Condition {operator_name} {key!r} in {where} has an empty list of values"
            )
        values: list[str] = []
        for item in items:
            if isinstance(item, bool):
                values.append("true" if item else "false")
            elif isinstance(item, str):
                values.append(str(item))
            else:
                raise MalformedPolicyDocument(
                    f"Condition {operator_name} {key!r} in {where}: values must be strings, booleans or "
                    f"numbers, not {json.dumps(item)}"
                )
        return tuple(values)

    def _warn_about_key_kind(self, condition: Condition, where: str) -> None:
        op = condition.operator
        if op.qualifier and condition.key in SINGLE_VALUED_KEYS:
            self.warnings.append(
                f"{op.name} on single-valued key {condition.key} in {where}: set operators are for multivalued keys"
            )
        if not op.qualifier and op.spec.family != "Null" and condition.key in MULTIVALUED_KEYS:
            self.warnings.append(
                f"{op.name} on multivalued key {condition.key} in {where}: use ForAnyValue: or ForAllValues:"
            )


def _variable_before_resource_part(template: Template) -> bool:
    """Whether a variable stands before the ARN's fifth colon (partition, service, region, account).

    AWS: "You can use a policy variable in the Resource element, but only in the resource portion
    of the ARN. This portion of the ARN appears after the fifth colon (:). You can't use a variable
    to replace parts of the ARN before the fifth colon, such as the service or account." (IAM User
    Guide, reference_policies_variables, "Resource element").
    """
    colons = 0
    for part in template:
        if isinstance(part, VariableRef):
            return colons < 5
        colons += part.text.count(":")
    return False


def _placeholder(template: Template) -> tuple[tuple[str, bool], ...]:
    """Chunks for a template with variables replaced by an empty literal, to count ARN components."""
    return tuple(("", False) if isinstance(part, VariableRef) else (part.text, True) for part in template)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


Position = tuple[int, int]  # (line, column), both from 1


def _position(text: str, offset: int) -> Position:
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def statement_positions(text: str) -> list[tuple[Position, Position]]:
    """Start and end (line, column) of each statement in a policy's text, in order.

    For the policy simulator's MatchedStatements; ``[]`` if the text is not a JSON object.
    """
    decoder = json.JSONDecoder()
    whitespace = re.compile(r"\s*")

    def skip(index: int) -> int:
        match = whitespace.match(text, index)
        return match.end() if match else index

    def value_span(index: int) -> tuple[int, int]:
        _, end = decoder.raw_decode(text, index)
        return index, end

    try:
        index = skip(0)
        if text[index] != "{":
            return []
        index = skip(index + 1)
        while text[index] != "}":
            key, index = decoder.raw_decode(text, index)
            index = skip(index)
            if text[index] != ":":
                return []
            index = skip(index + 1)
            if key == "Statement":
                if text[index] != "[":
                    spans = [value_span(index)]
                else:
                    spans = []
                    index = skip(index + 1)
                    while text[index] != "]":
                        span = value_span(index)
                        spans.append(span)
                        index = skip(span[1])
                        if text[index] == ",":
                            index = skip(index + 1)
                return [(_position(text, start), _position(text, end - 1)) for start, end in spans]
            _, index = value_span(index)
            index = skip(index)
            if text[index] == ",":
                index = skip(index + 1)
    except (ValueError, IndexError):
        return []
    return []
