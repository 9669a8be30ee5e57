"""Condition operators, family by family, checked against direct computations of AWS's rules."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.iam.conditions import OPERATORS, make_condition

from .helpers import allow, decide, deny, policy_text
from .test_glob_arn import oracle

KEY = "ex:Key"
words = st.text(alphabet="aAbB*?.", min_size=0, max_size=4)
word_lists = st.lists(words, min_size=1, max_size=3)
request_lists = st.lists(words, min_size=1, max_size=3)


def holds(operator: str, policy_values: Sequence[str], request_values: Sequence[str] | None) -> bool:
    condition = make_condition(operator, KEY, policy_values, variables=True)
    context = {} if request_values is None else {KEY.lower(): list(request_values)}
    return condition.holds(context)


def string_match(variant: str, policy: str, request: str) -> bool:
    if variant == "Equals":
        return policy == request
    if variant == "EqualsIgnoreCase":
        return policy.casefold() == request.casefold()
    return oracle(policy, request)


@pytest.mark.parametrize("variant", ["Equals", "EqualsIgnoreCase", "Like"])
@given(policy=word_lists, request=request_lists)
def test_string_operators(variant: str, policy: list[str], request: list[str]) -> None:
    any_match = any(string_match(variant, p, r) for p in policy for r in request)
    assert holds(f"String{variant}", policy, request) == any_match
    assert holds(f"StringNot{variant}", policy, request) == (not any_match)
    each = [any(string_match(variant, p, r) for p in policy) for r in request]
    assert holds(f"ForAnyValue:String{variant}", policy, request) == any(each)
    assert holds(f"ForAllValues:String{variant}", policy, request) == all(each)
    assert holds(f"ForAnyValue:StringNot{variant}", policy, request) == (not all(each))
    assert holds(f"ForAllValues:StringNot{variant}", policy, request) == (not any(each))


ALL_BASE_OPERATORS = sorted(name for name in OPERATORS if name != "Null")
SAMPLE_VALUE = {
    "String": "x",
    "Numeric": "1",
    "Date": "2026-01-01T00:00:00Z",
    "Bool": "true",
    "Binary": base64.b64encode(b"x").decode(),
    "IpAddress": "10.0.0.0/8",
    "Arn": "arn:aws:ssm:*:*:document/x",
}


@pytest.mark.parametrize("base", ALL_BASE_OPERATORS)
def test_absent_key_rules_for_every_operator(base: str) -> None:
    negated = OPERATORS[base].negated
    value = [SAMPLE_VALUE[OPERATORS[base].family]]
    assert holds(base, value, None) == negated
    assert holds(f"{base}IfExists", value, None)
    assert holds(f"ForAllValues:{base}", value, None)
    assert holds(f"ForAllValues:{base}", value, [])
    assert not holds(f"ForAnyValue:{base}", value, None)
    assert not holds(f"ForAnyValue:{base}", value, [])
    assert holds(f"ForAnyValue:{base}IfExists", value, None)


@given(value=st.sampled_from(["true", "false", "TRUE", "ture", "", "1", "yes"]), present=st.booleans())
def test_null(value: str, present: bool) -> None:
    expected = (value.lower() == "true" and not present) or (value.lower() == "false" and present)
    assert holds("Null", [value], ["v"] if present else None) == expected


numbers = st.one_of(
    st.integers(-1000, 1000), st.decimals(-1000, 1000, places=3, allow_nan=False, allow_infinity=False)
)
NUMERIC_CHECKS = {
    "NumericEquals": lambda r, p: r == p,
    "NumericNotEquals": lambda r, p: r == p,  # negated: holds iff no value is equal
    "NumericLessThan": lambda r, p: r < p,
    "NumericLessThanEquals": lambda r, p: r <= p,
    "NumericGreaterThan": lambda r, p: r > p,
    "NumericGreaterThanEquals": lambda r, p: r >= p,
}


@pytest.mark.parametrize("name", sorted(NUMERIC_CHECKS))
@given(policy=st.lists(numbers, min_size=1, max_size=3), request=numbers)
def test_numeric_operators(name: str, policy: list[object], request: object) -> None:
    from decimal import Decimal

    any_match = any(NUMERIC_CHECKS[name](Decimal(str(request)), Decimal(str(p))) for p in policy)
    expected = not any_match if name == "NumericNotEquals" else any_match
    assert holds(name, [str(p) for p in policy], [str(request)]) == expected


def test_numeric_request_value_that_is_not_a_number_does_not_match() -> None:
    assert not holds("NumericLessThan", ["10"], ["five"])
    assert holds("NumericNotEquals", ["10"], ["five"])


moments = st.datetimes(
    min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
).map(lambda m: m.replace(microsecond=0))


def date_forms(moment: dt.datetime) -> list[str]:
    return [moment.strftime("%Y-%m-%dT%H:%M:%SZ"), moment.isoformat(), str(int(moment.timestamp()))]


DATE_CHECKS = {
    "DateEquals": lambda r, p: r == p,
    "DateLessThan": lambda r, p: r < p,
    "DateLessThanEquals": lambda r, p: r <= p,
    "DateGreaterThan": lambda r, p: r > p,
    "DateGreaterThanEquals": lambda r, p: r >= p,
}


@pytest.mark.parametrize("name", sorted(DATE_CHECKS))
@given(policy=moments, request=moments, policy_form=st.integers(0, 2), request_form=st.integers(0, 2))
def test_date_operators_across_formats(
    name: str, policy: dt.datetime, request: dt.datetime, policy_form: int, request_form: int
) -> None:
    expected = DATE_CHECKS[name](request, policy)
    assert holds(name, [date_forms(policy)[policy_form]], [date_forms(request)[request_form]]) == expected
    if name == "DateEquals":
        assert (
            holds("DateNotEquals", [date_forms(policy)[policy_form]], [date_forms(request)[request_form]])
            != expected
        )


def test_date_only_form_is_midnight_utc() -> None:
    assert holds("DateEquals", ["2026-11-28"], ["2026-11-28T00:00:00Z"])
    assert holds("DateLessThan", ["2026-11-28"], ["2026-11-27T23:59:59Z"])


@given(
    policy=st.text(max_size=6).filter(lambda t: "${" not in t),  # "${" starts a variable
    request=st.sampled_from(["true", "false", "True", "FALSE", "ture", ""]),
)
def test_bool(policy: str, request: str) -> None:
    expected = policy.lower() in ("true", "false") and request.lower() == policy.lower()
    assert holds("Bool", [policy], [request]) == expected


def test_bool_typo_never_matches_a_present_key_but_ifexists_passes_when_absent() -> None:
    for present in ("true", "false"):
        assert not holds("Bool", ["ture"], [present])
        assert not holds("BoolIfExists", ["ture"], [present])
    assert holds("BoolIfExists", ["ture"], None)


@given(policy=st.binary(max_size=6), request=st.binary(max_size=6))
def test_binary_equals(policy: bytes, request: bytes) -> None:
    encoded = base64.b64encode
    assert holds("BinaryEquals", [encoded(policy).decode()], [encoded(request).decode()]) == (
        policy == request
    )


ipv4 = st.ip_addresses(v=4)
ipv6 = st.ip_addresses(v=6)


@given(
    base=st.one_of(ipv4, ipv6),
    prefix=st.integers(0, 128),
    request=st.one_of(ipv4, ipv6),
)
def test_ip_address_operators(
    base: ipaddress.IPv4Address | ipaddress.IPv6Address,
    prefix: int,
    request: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    prefix = min(prefix, base.max_prefixlen)
    network = ipaddress.ip_network(f"{base}/{prefix}", strict=False)
    # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; they are compared as IPv4.
    if isinstance(request, ipaddress.IPv6Address) and request.ipv4_mapped is not None:
        request = request.ipv4_mapped
    expected = request.version == network.version and request in network
    assert holds("IpAddress", [f"{base}/{prefix}"], [str(request)]) == expected
    assert holds("NotIpAddress", [f"{base}/{prefix}"], [str(request)]) == (not expected)


def test_single_address_without_prefix_and_garbage_request() -> None:
    assert holds("IpAddress", ["203.0.113.10"], ["203.0.113.10"])
    assert not holds("IpAddress", ["203.0.113.10"], ["203.0.113.11"])
    assert not holds("IpAddress", ["0.0.0.0/0"], ["not-an-ip"])
    assert holds("NotIpAddress", ["0.0.0.0/0"], ["not-an-ip"])


arn_segments = st.text(alphabet="ab*-", max_size=3)


@pytest.mark.parametrize("variant", ["Equals", "Like"])
@given(
    pattern=st.lists(arn_segments, min_size=5, max_size=5),
    arn=st.lists(st.text(alphabet="ab-", max_size=3), min_size=5, max_size=5),
)
def test_arn_operators_are_per_component(variant: str, pattern: list[str], arn: list[str]) -> None:
    expected = all(oracle(p, a, stop=":") for p, a in zip(pattern[:4], arn[:4], strict=True)) and oracle(
        pattern[4], arn[4]
    )
    policy_value = "arn:" + ":".join(pattern)
    request_value = "arn:" + ":".join(arn)
    assert holds(f"Arn{variant}", [policy_value], [request_value]) == expected
    assert holds(f"ArnNot{variant}", [policy_value], [request_value]) == (not expected)


def test_ifexists_applies_the_statement_when_the_key_is_absent() -> None:
    # Allow: more permissive (untagged targets pass).
    allow_if_exists = policy_text(allow(Condition={"StringEqualsIfExists": {"aws:ResourceTag/Env": "dev"}}))
    assert decide(allow_if_exists, "ssm:StartSession").allowed
    assert decide(allow_if_exists, "ssm:StartSession", context={"aws:ResourceTag/Env": ["dev"]}).allowed
    assert not decide(allow_if_exists, "ssm:StartSession", context={"aws:ResourceTag/Env": ["prod"]}).allowed

    # Deny with a positive operator: without IfExists an untagged target escapes the Deny,
    # with IfExists it does not. (Negated operators already hold on an absent key.)
    plain_deny = deny(Condition={"StringEquals": {"aws:ResourceTag/Env": "prod"}})
    if_exists_deny = deny(Condition={"StringEqualsIfExists": {"aws:ResourceTag/Env": "prod"}})
    assert decide(policy_text(allow(), plain_deny), "ssm:StartSession").allowed
    assert decide(policy_text(allow(), if_exists_deny), "ssm:StartSession").decision == "explicitDeny"
    dev = {"aws:ResourceTag/Env": ["dev"]}
    assert decide(policy_text(allow(), if_exists_deny), "ssm:StartSession", context=dev).allowed
    negated_deny = deny(Condition={"StringNotEqualsIfExists": {"aws:ResourceTag/Env": "dev"}})
    assert decide(policy_text(allow(), negated_deny), "ssm:StartSession", context=dev).allowed
    assert decide(policy_text(allow(), negated_deny), "ssm:StartSession").decision == "explicitDeny"


def test_conditions_are_and_across_operators_and_keys_or_across_values() -> None:
    text = policy_text(
        allow(
            Condition={
                "StringEquals": {"aws:username": ["alice", "bob"], "aws:PrincipalTag/team": "ops"},
                "Bool": {"aws:SecureTransport": "true"},
            }
        )
    )
    good = {"aws:SecureTransport": ["true"], "aws:PrincipalTag/team": ["ops"]}
    from .helpers import user

    assert decide(text, "ssm:StartSession", context=good, principal=user("bob", team="ops")).allowed
    assert not decide(text, "ssm:StartSession", context=good, principal=user("carol", team="ops")).allowed
    assert not decide(
        text,
        "ssm:StartSession",
        context={"aws:SecureTransport": ["false"]},
        principal=user("bob", team="ops"),
    ).allowed
    assert not decide(text, "ssm:StartSession", context=good, principal=user("bob", team="dev")).allowed


def test_context_key_names_are_case_insensitive() -> None:
    text = policy_text(allow(Condition={"StringEquals": {"AWS:RequestedRegion": "eu-west-1"}}))
    assert decide(text, "ssm:StartSession", context={"aws:requestedregion": ["eu-west-1"]}).allowed
    assert decide(text, "ssm:StartSession", context={"Aws:RequestedRegion": ["eu-west-1"]}).allowed


def test_for_all_values_on_absent_key_is_dangerous_with_allow() -> None:
    text = policy_text(allow(Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}))
    assert decide(text, "ssm:AddTagsToResource").allowed  # no tags at all: vacuously true
    assert decide(text, "ssm:AddTagsToResource", context={"aws:TagKeys": ["team"]}).allowed
    assert not decide(text, "ssm:AddTagsToResource", context={"aws:TagKeys": ["team", "cost"]}).allowed
