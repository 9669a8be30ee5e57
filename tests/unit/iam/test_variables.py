"""Policy variables: substitution is literal, single pass, with defaults and escapes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.iam.variables import (
    LiteralText,
    PolicyText,
    VariableRef,
    VariableSyntaxError,
    parse_template,
    render_text,
)

from .helpers import ACCOUNT, allow, decide, policy_text, role_session, user

SESSION_POLICY = policy_text(
    allow(["ssm:TerminateSession"], f"arn:aws:ssm:*:{ACCOUNT}:session/${{aws:username}}-*")
)


def session(sid: str) -> str:
    return f"arn:aws:ssm:eu-west-1:{ACCOUNT}:session/{sid}"


def test_parse_template_parts() -> None:
    assert parse_template("a${aws:username}b", variables=True) == (
        PolicyText("a"),
        VariableRef("aws:username", None),
        PolicyText("b"),
    )
    assert parse_template("${*}${?}${$}", variables=True) == (
        LiteralText("*"),
        LiteralText("?"),
        LiteralText("$"),
    )
    assert parse_template("${aws:username}", variables=False) == (PolicyText("${aws:username}"),)


@pytest.mark.parametrize(
    ("text", "key", "default"),
    [
        ("${aws:username, 'fallback'}", "aws:username", "fallback"),
        ("${AWS:UserName, 'Fall Back'}", "aws:username", "Fall Back"),
        ("${AWS:UserName,'x'}", "aws:username", "x"),
        ("${aws:PrincipalTag/team, 'it''s'}", "aws:principaltag/team", "it's"),
        ("${aws:username, 'a}b'}", "aws:username", "a}b"),
        ("${aws:username, ''}", "aws:username", ""),
    ],
)
def test_defaults(text: str, key: str, default: str) -> None:
    assert parse_template(text, variables=True) == (VariableRef(key, default),)


@pytest.mark.parametrize(
    "text",
    [
        "${aws:username",
        "${}",
        "${ }",
        "${a b}",
        "${aws:username, 'x}",
        "${aws:username, x}",
        "${aws:username, 'x' }",
    ],
)
def test_malformed_variables(text: str) -> None:
    with pytest.raises(VariableSyntaxError):
        parse_template(text, variables=True)


def test_default_is_not_expanded_again() -> None:
    template = parse_template("${ex:missing, '${aws:username}'}", variables=True)
    assert render_text(template, {"aws:username": ["alice"]}) == "${aws:username}"


def test_multivalued_key_cannot_be_a_variable() -> None:
    template = parse_template("${aws:TagKeys}", variables=True)
    assert render_text(template, {"aws:tagkeys": ["a", "b"]}) is None
    with_default = parse_template("${aws:TagKeys, 'none'}", variables=True)
    assert render_text(with_default, {"aws:tagkeys": ["a", "b"]}) == "none"


def test_user_can_terminate_only_own_sessions() -> None:
    assert decide(SESSION_POLICY, "ssm:TerminateSession", session("alice-0123456789abcdef0")).allowed
    assert not decide(SESSION_POLICY, "ssm:TerminateSession", session("bob-0123456789abcdef0")).allowed
    assert not decide(SESSION_POLICY, "ssm:TerminateSession", session("alicex-0123")).allowed


@pytest.mark.parametrize("name", ["*", "?", "a*", "*-*", ".*", "al?ce"])
def test_username_with_wildcard_characters_cannot_widen_the_pattern(name: str) -> None:
    """Security: substituted text is literal, so a user called '*' gets only sessions named '*-…'."""
    principal = user(name)
    assert not decide(
        SESSION_POLICY, "ssm:TerminateSession", session("bob-0123"), principal=principal
    ).allowed
    assert not decide(
        SESSION_POLICY, "ssm:TerminateSession", session("alice-0123"), principal=principal
    ).allowed
    assert decide(
        SESSION_POLICY, "ssm:TerminateSession", session(f"{name}-0123"), principal=principal
    ).allowed


@given(
    name=st.text(alphabet="ab*?.+-", min_size=1, max_size=6),
    other=st.text(alphabet="ab*?.+-", min_size=1, max_size=6),
)
def test_substituted_name_matches_literally(name: str, other: str) -> None:
    result = decide(SESSION_POLICY, "ssm:TerminateSession", session(f"{other}-1"), principal=user(name))
    # Only a session whose prefix is exactly the name (followed by "-") is allowed; '-' inside the
    # names may make several splits possible, so compare against every split.
    sid = f"{other}-1"
    assert result.allowed == sid.startswith(f"{name}-")


def test_role_callers_have_no_username_so_the_entry_matches_nothing() -> None:
    caller = role_session(session="alice")
    assert not decide(SESSION_POLICY, "ssm:TerminateSession", session("alice-1"), principal=caller).allowed


def test_userid_variable_for_role_sessions() -> None:
    text = policy_text(allow("ssm:TerminateSession", "arn:aws:ssm:*:*:session/${aws:userid}-*"))
    caller = role_session(session="carol")
    assert decide(text, "ssm:TerminateSession", session("AROAEXAMPLE:carol-1"), principal=caller).allowed
    assert not decide(text, "ssm:TerminateSession", session("carol-1"), principal=caller).allowed


def test_default_applies_when_key_is_absent() -> None:
    text = policy_text(
        allow("ssm:StartSession", "arn:aws:ec2:*:*:instance/${aws:PrincipalTag/box, 'i-default'}")
    )
    arn = "arn:aws:ec2:r:1:instance/"
    assert decide(text, "ssm:StartSession", arn + "i-default").allowed
    assert decide(text, "ssm:StartSession", arn + "i-tagged", principal=user("alice", box="i-tagged")).allowed
    assert not decide(
        text, "ssm:StartSession", arn + "i-default", principal=user("alice", box="i-tagged")
    ).allowed


def test_escapes_are_literal_special_characters() -> None:
    text = policy_text(allow("ssm:StartSession", "arn:aws:ssm:*:*:document/a${*}b${?}${$}"))
    assert decide(text, "ssm:StartSession", "arn:aws:ssm:r:1:document/a*b?$").allowed
    assert not decide(text, "ssm:StartSession", "arn:aws:ssm:r:1:document/axxbc$").allowed


@pytest.mark.parametrize("version", ["2008-10-17", None])
def test_old_or_missing_version_keeps_variables_literal(version: str | None) -> None:
    text = policy_text(
        allow("ssm:TerminateSession", "arn:aws:ssm:*:*:session/${aws:username}-*"), version=version
    )
    assert not decide(text, "ssm:TerminateSession", session("alice-1")).allowed
    assert decide(text, "ssm:TerminateSession", session("${aws:username}-1")).allowed


def test_variables_in_condition_values() -> None:
    text = policy_text(
        allow(
            "ssm:StartSession",
            Condition={"StringEquals": {"ssm:resourceTag/Owner": "${aws:username}"}},
        )
    )
    assert decide(text, "ssm:StartSession", context={"ssm:resourceTag/Owner": ["alice"]}).allowed
    assert not decide(text, "ssm:StartSession", context={"ssm:resourceTag/Owner": ["bob"]}).allowed
    like = policy_text(
        allow("ssm:StartSession", Condition={"StringLike": {"ssm:resourceTag/Owner": "${aws:username}*"}})
    )
    assert decide(like, "ssm:StartSession", context={"ssm:resourceTag/Owner": ["alice-team"]}).allowed
    assert not decide(
        like, "ssm:StartSession", context={"ssm:resourceTag/Owner": ["bob"]}, principal=user("*")
    ).allowed


def test_context_cannot_spoof_identity_keys() -> None:
    spoofed = {"aws:username": ["bob"]}
    assert not decide(SESSION_POLICY, "ssm:TerminateSession", session("bob-1"), context=spoofed).allowed


def test_principal_arn_of_a_role_session_is_the_role_arn() -> None:
    text = policy_text(
        allow(
            "ssm:StartSession",
            Condition={"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/ops"}},
        )
    )
    assert decide(text, "ssm:StartSession", principal=role_session("ops", "carol")).allowed
    assert not decide(text, "ssm:StartSession", principal=role_session("dev", "carol")).allowed
    assert not decide(text, "ssm:StartSession").allowed
