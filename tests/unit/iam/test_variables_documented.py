"""Policy variables where AWS documents the outcome, each test quoting the sentence it checks.

Sources (AWS IAM User Guide):
- VARS: "IAM policy elements: Variables and tags",
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html
- CHECKS: "IAM Access Analyzer policy check reference",
  https://docs.aws.amazon.com/IAM/latest/UserGuide/access-analyzer-reference-policy-checks.html
"""

from __future__ import annotations

import pytest

from openssm.iam import MalformedPolicyDocument, parse_policy

from .helpers import ACCOUNT, allow, decide, policy_text, role_session, user

TEAM_BUCKET = "arn:aws:ssm:us-east-1:123456789012:document/team-"
SESSION = f"arn:aws:ssm:us-east-1:{ACCOUNT}:session/"


def _resource_policy(resource: str, *, not_resource: bool = False) -> str:
    statement = allow("ssm:StartSession", resource)
    if not_resource:
        statement["NotResource"] = statement.pop("Resource")
    return policy_text(statement)


# -- no value ------------------------------------------------------------------------------------


def test_resource_with_a_variable_that_has_no_value_matches_no_resource() -> None:
    """VARS, "Policy variables with no value": "If a variable that has no value in the authorization
    context is used as part of the Resource or NotResource element of a policy, the resource that
    includes a policy variable with no value will not match any resource."

    A role session has no aws:username (VARS, "Principal key values": "(not present)")."""
    text = _resource_policy(SESSION + "${aws:username}-*")
    caller = role_session(session="carol")
    for resource in (SESSION + "carol-1", SESSION + "-1", SESSION + "${aws:username}-1", "*"):
        assert not decide(text, "ssm:StartSession", resource, principal=caller).allowed
    # The same policy, once the key has a value, matches as usual.
    assert decide(text, "ssm:StartSession", SESSION + "alice-1", principal=user("alice")).allowed


def test_not_resource_entry_with_no_value_excludes_nothing() -> None:
    """VARS, "Policy variables with no value" (same sentence, NotResource): the entry matches no
    resource, so a NotResource statement made of it applies to every resource."""
    text = _resource_policy(SESSION + "${aws:PrincipalTag/team}-*", not_resource=True)
    assert decide(text, "ssm:StartSession", SESSION + "ops-1").allowed
    assert decide(text, "ssm:StartSession", SESSION + "-1").allowed
    # With a value, the entry excludes what it matches.
    tagged = user("alice", team="ops")
    assert not decide(text, "ssm:StartSession", SESSION + "ops-1", principal=tagged).allowed
    assert decide(text, "ssm:StartSession", SESSION + "dev-1", principal=tagged).allowed


def test_other_entries_of_the_resource_still_match() -> None:
    """Only "the resource that includes a policy variable with no value" stops matching."""
    text = policy_text(
        allow("ssm:StartSession", [SESSION + "${aws:PrincipalTag/team}-*", SESSION + "shared-*"])
    )
    assert decide(text, "ssm:StartSession", SESSION + "shared-1").allowed
    assert not decide(text, "ssm:StartSession", SESSION + "ops-1").allowed


@pytest.mark.parametrize(
    "operator", ["StringEquals", "StringLike", "StringEqualsIgnoreCase", "ArnEquals", "ArnLike"]
)
def test_positive_condition_with_a_variable_that_has_no_value_does_not_match(operator: str) -> None:
    """VARS: "When you use a variable with no value in the condition element of an IAM policy,
    Condition operators like StringEquals or StringLike do not match, and the policy statement does
    not take effect." """
    value = (
        "${aws:PrincipalTag/owner}"
        if not operator.startswith("Arn")
        else "arn:aws:iam::*:user/${aws:PrincipalTag/owner}"
    )
    text = policy_text(allow("ssm:StartSession", Condition={operator: {"ssm:resourceTag/Owner": value}}))
    for request_value in ("", "${aws:PrincipalTag/owner}", "arn:aws:iam::1:user/", "x"):
        assert not decide(
            text, "ssm:StartSession", context={"ssm:resourceTag/Owner": [request_value]}
        ).allowed


@pytest.mark.parametrize(
    "operator",
    ["StringNotEquals", "StringNotLike", "StringNotEqualsIgnoreCase", "ArnNotEquals", "ArnNotLike"],
)
def test_negated_condition_with_a_variable_that_has_no_value_matches(operator: str) -> None:
    """VARS: "Inverted condition operators like StringNotEquals or StringNotLike do match against a
    null value, as the value of the condition key they are testing against is not equal to or like
    the effectively null value." """
    value = (
        "${aws:PrincipalTag/owner}"
        if not operator.startswith("Arn")
        else "arn:aws:iam::*:user/${aws:PrincipalTag/owner}"
    )
    text = policy_text(allow("ssm:StartSession", Condition={operator: {"ssm:resourceTag/Owner": value}}))
    for request_value in ("", "alice", "arn:aws:iam::1:user/alice"):
        assert decide(text, "ssm:StartSession", context={"ssm:resourceTag/Owner": [request_value]}).allowed


def test_documented_deny_example_denies_when_the_principal_tag_is_not_set() -> None:
    """VARS: "In the following example, aws:principaltag/Team must be equal to
    s3:ExistingObjectTag/Team to allow access. Access is explicitly denied when
    aws:principaltag/Team is not set." (the example, with an SSM resource tag in place of S3's)."""
    deny = policy_text(
        {
            "Effect": "Deny",
            "Action": "ssm:StartSession",
            "Resource": "*",
            "Condition": {"StringNotEquals": {"ssm:resourceTag/Team": "${aws:PrincipalTag/Team}"}},
        },
        allow("ssm:StartSession"),
    )
    tagged_node = {"ssm:resourceTag/Team": ["blue"]}
    assert decide(deny, "ssm:StartSession", context=tagged_node).decision == "explicitDeny"
    assert (
        decide(deny, "ssm:StartSession", context=tagged_node, principal=user("a", Team="red")).decision
        == "explicitDeny"
    )
    assert decide(deny, "ssm:StartSession", context=tagged_node, principal=user("a", Team="blue")).allowed


def test_multivalued_key_is_not_a_variable() -> None:
    """VARS, "Important": "You can use any single-valued condition key as a variable. You can't use
    a multivalued condition key as a variable." A multivalued key's variable has no value."""
    text = _resource_policy(SESSION + "${aws:TagKeys}-*")
    assert not decide(text, "ssm:StartSession", SESSION + "a-1", context={"aws:TagKeys": ["a"]}).allowed
    assert not decide(text, "ssm:StartSession", SESSION + "a-1", context={"aws:TagKeys": ["a", "b"]}).allowed


# -- case and spaces inside ${…} ---------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["${aws:username}", "${AWS:UserName}", "${Aws:USERNAME}"])
def test_key_names_in_variables_are_case_insensitive(spelling: str) -> None:
    """VARS, "Important": "Key names are case-insensitive. For example, aws:CurrentTime is
    equivalent to AWS:currenttime." """
    text = _resource_policy(SESSION + spelling + "-*")
    assert decide(text, "ssm:StartSession", SESSION + "alice-1").allowed
    assert not decide(text, "ssm:StartSession", SESSION + "bob-1").allowed


def test_the_substituted_value_keeps_its_case() -> None:
    """The key's name is case-insensitive, its value is not: the resource part of an ARN is matched
    case-sensitively (reference_policies_elements_resource)."""
    text = _resource_policy(SESSION + "${aws:username}-*")
    assert decide(text, "ssm:StartSession", SESSION + "Alice-1", principal=user("Alice")).allowed
    assert not decide(text, "ssm:StartSession", SESSION + "alice-1", principal=user("Alice")).allowed


@pytest.mark.parametrize(
    "spelling", ["${ aws:username }", "${aws:username }", "${ aws:username}", "${aws: username}"]
)
def test_a_space_in_the_variable_name_is_refused(spelling: str) -> None:
    """CHECKS, "Error - Unsupported space in variable": "A space is not supported within the policy
    variable text. [...] Although you can include a space when you specify a default variable, you
    cannot include a space in the variable name." """
    with pytest.raises(MalformedPolicyDocument, match="Unsupported space in variable"):
        parse_policy(_resource_policy(SESSION + spelling + "-*"))


def test_spaces_in_the_default_value_are_kept() -> None:
    """CHECKS (same): a space is allowed in the default; VARS, "Specifying default values":
    "surround the default value with single quotes (' '), and separate the variable text and the
    default value with a comma and space (, )." """
    text = _resource_policy(SESSION + "${aws:PrincipalTag/team, 'no team'}-*")
    assert decide(text, "ssm:StartSession", SESSION + "no team-1").allowed
    assert not decide(text, "ssm:StartSession", SESSION + "noteam-1").allowed


def test_default_value_applies_when_the_key_has_no_value_and_is_case_sensitive() -> None:
    """VARS, "Specifying default values": "For users without team tags, it sets a default value of
    company-wide for the bucket name." The example's Resource, with an SSM document for the bucket:
    "...-${aws:PrincipalTag/team, 'company-wide'}"."""
    text = _resource_policy(TEAM_BUCKET + "${aws:PrincipalTag/team, 'company-wide'}")
    assert decide(text, "ssm:StartSession", TEAM_BUCKET + "company-wide").allowed
    assert not decide(text, "ssm:StartSession", TEAM_BUCKET + "Company-Wide").allowed
    yellow = user("a", team="yellow")
    assert decide(text, "ssm:StartSession", TEAM_BUCKET + "yellow", principal=yellow).allowed
    assert not decide(text, "ssm:StartSession", TEAM_BUCKET + "company-wide", principal=yellow).allowed


@pytest.mark.parametrize(
    ("resource", "check"),
    [
        (SESSION + "${aws:username", "Missing brace in variable"),
        (SESSION + "${aws:username, company}", "Missing quote in variable"),
        (SESSION + "${aws:username, 'company}", "Missing brace in variable"),
        (SESSION + "${}", "Empty variable"),
    ],
)
def test_malformed_variables_are_refused_with_the_checks_name(resource: str, check: str) -> None:
    """CHECKS: "Missing brace in variable: The policy variable is missing a closing curly brace";
    "Missing quote in variable: The policy variable default value must begin and end with a single
    quote"; "Empty variable: Empty policy variable." """
    with pytest.raises(MalformedPolicyDocument, match=check):
        parse_policy(_resource_policy(resource))


# -- where variables may stand -------------------------------------------------------------------


@pytest.mark.parametrize(
    "resource",
    ["arn:aws:ssm:${aws:RequestedRegion}:*:document/x", "arn:aws:ssm:*:${aws:PrincipalAccount}:document/x"],
)
def test_variables_only_in_the_resource_part_of_an_arn(resource: str) -> None:
    """VARS, "Resource element": "You can use a policy variable in the Resource element, but only in
    the resource portion of the ARN. This portion of the ARN appears after the fifth colon (:). You
    can't use a variable to replace parts of the ARN before the fifth colon, such as the service or
    account." """
    with pytest.raises(MalformedPolicyDocument, match="resource portion"):
        parse_policy(_resource_policy(resource))


@pytest.mark.parametrize(
    ("operator", "value"),
    [
        ("Bool", "${aws:PrincipalTag/secure}"),
        ("NumericEquals", "${aws:PrincipalTag/n}"),
        ("DateLessThan", "${aws:TokenIssueTime}"),
        ("IpAddress", "${aws:PrincipalTag/net}"),
        ("BinaryEquals", "${aws:PrincipalTag/b}"),
        ("Null", "${aws:PrincipalTag/flag}"),
    ],
)
def test_variables_only_with_string_and_arn_operators(operator: str, value: str) -> None:
    """VARS, "Condition element": "You can't use a policy variable with other operators, such as
    Numeric, Date, Boolean, Binary, IP Address, or Null operators." CHECKS, "Invalid variable for
    operator": "Policy variables can only be used with String and ARN operators." """
    with pytest.raises(MalformedPolicyDocument, match="Invalid variable for operator"):
        parse_policy(
            policy_text(allow("ssm:StartSession", Condition={operator: {"aws:SecureTransport": value}}))
        )


def test_without_version_2012_variables_are_literal_text_everywhere() -> None:
    """VARS, "Note": "If you don't include the Version element and set it to an appropriate version
    date, variables like ${aws:username} are treated as literal strings in the policy." So none of
    the checks above apply: the text is matched as written."""
    text = policy_text(
        allow(
            "ssm:StartSession",
            "arn:aws:ssm:${ aws:username }:*:document/x",
            Condition={"Bool": {"aws:SecureTransport": "${x}"}},
        ),
        version=None,
    )
    parse_policy(text)
