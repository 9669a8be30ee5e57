"""Policy validation: what AWS's validator rejects, with messages that say what is wrong."""

from __future__ import annotations

import json

import pytest

from openssm.iam import MalformedPolicyDocument, parse_policy, policy_size

from .helpers import allow, policy_text


def rejects(text: str, *fragments: str) -> None:
    with pytest.raises(MalformedPolicyDocument) as info:
        parse_policy(text)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message


def test_valid_policy_parses_with_statements_in_order() -> None:
    policy = parse_policy(
        policy_text(
            allow("ssm:StartSession", Sid="First"), {"Effect": "Deny", "Action": "*", "Resource": "*"}
        )
    )
    assert [s.effect for s in policy.statements] == ["Allow", "Deny"]
    assert policy.statements[0].sid == "First"
    assert policy.variables_enabled


def test_statement_may_be_a_single_object() -> None:
    policy = parse_policy(json.dumps({"Version": "2012-10-17", "Statement": allow()}))
    assert len(policy.statements) == 1


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("{not json", ("Syntax errors in policy",)),
        ("[]", ("must be a JSON object",)),
        (json.dumps({"Version": "2012-10-17"}), ("Missing required field Statement",)),
        (json.dumps({"Version": "2012-10-18", "Statement": [allow()]}), ("Version", "2012-10-18")),
        (json.dumps({"Version": 2012, "Statement": [allow()]}), ("Version",)),
        (json.dumps({"Version": "2012-10-17", "Statement": []}), ("non-empty",)),
        (
            json.dumps({"Version": "2012-10-17", "Statement": [allow()], "Extra": 1}),
            ("Unknown field 'Extra'",),
        ),
        (policy_text({"Action": "*", "Resource": "*"}), ("Missing required field Effect", "statement 0")),
        (
            policy_text(allow(), {"Action": "*", "Resource": "*"}),
            ("Missing required field Effect", "statement 1"),
        ),
        (policy_text({"Effect": "allow", "Action": "*", "Resource": "*"}), ("Effect", '"allow"')),
        (policy_text(allow(NotAction="iam:*")), ("both Action and NotAction",)),
        (policy_text({"Effect": "Allow", "Resource": "*"}), ("must contain actions",)),
        (policy_text(allow(NotResource="*")), ("both Resource and NotResource",)),
        (policy_text({"Effect": "Allow", "Action": "*"}), ("must contain resources",)),
        (policy_text(allow(Principal={"AWS": "*"})), ("should not specify a principal",)),
        (policy_text(allow(NotPrincipal={"AWS": "*"})), ("should not specify a principal",)),
        (
            policy_text(allow(Condition={"StringEqualz": {"aws:username": "a"}})),
            ("Unknown condition operator", "StringEqualz"),
        ),
        (
            policy_text(allow(Condition={"ForSomeValues:StringEquals": {"aws:TagKeys": "a"}})),
            ("set operator",),
        ),
        (
            policy_text(allow(Condition={"NumericLessThan": {"aws:EpochTime": "soon"}})),
            ("is not a number", "soon"),
        ),
        (policy_text(allow(Condition={"DateGreaterThan": {"aws:CurrentTime": "yesterday"}})), ("ISO 8601",)),
        (
            policy_text(allow(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.300/8"}})),
            ("not an IP address",),
        ),
        (policy_text(allow(Condition={"BinaryEquals": {"ex:Blob": "***"}})), ("not base64",)),
        (policy_text(allow(Condition={"NullIfExists": {"aws:username": "true"}})), ("Null",)),
        (policy_text(allow(Condition={"StringEquals": {"aws:username": []}})), ("empty list",)),
        (policy_text(allow(Condition={"StringEquals": {"aws:username": {"a": 1}}})), ("values must be",)),
        (policy_text(allow(Condition={"StringEquals": {"username": "a"}})), ("prefaced by a vendor",)),
        (policy_text(allow(Condition={"StringEquals": ["a"]})), ("must map condition keys",)),
        (policy_text(allow(Condition="x")), ("object of operators",)),
        (policy_text(allow("StartSession")), ("<service>:<action>",)),
        (policy_text(allow("ssm:${aws:username}")), ("not allowed in Action",)),
        (policy_text(allow([])), ("non-empty list",)),
        (policy_text(allow(["ssm:StartSession", 5])), ("only strings",)),
        (policy_text(allow(resource="i-0123")), ("ARN format",)),
        (policy_text(allow(resource="arn:aws:ssm:*")), ("ARN format",)),
        (policy_text(allow(resource="arn:aws:s3:::${aws:username")), ("Missing brace",)),
        (policy_text(allow(resource="arn:aws:s3:::${aws:username, fallback}")), ("Missing quote",)),
        (policy_text(allow(Sid="has space")), ("alpha-numeric",)),
        (policy_text(allow(Sid="A"), allow(Sid="A")), ("unique", "'A'")),
        (policy_text(allow(Bogus=1)), ("Unknown field 'Bogus'",)),
        ('{"Version": "2012-10-17", "Statement": [], "Statement": []}', ("duplicate key",)),
        (
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": NaN}]}',
            ("NaN",),
        ),
    ],
)
def test_malformed_documents_are_rejected_with_a_reason(text: str, fragments: tuple[str, ...]) -> None:
    rejects(text, *fragments)


def test_message_names_the_statement_by_sid() -> None:
    rejects(policy_text(allow(Sid="Broken", NotAction="x:y")), "Statement 0 (Broken)")


def test_bool_with_non_boolean_value_is_accepted_like_aws() -> None:
    # The operator's "ture" typo is a valid policy to AWS; it only never matches.
    parse_policy(policy_text(allow(Condition={"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "ture"}})))


def test_condition_values_accept_json_booleans_and_numbers() -> None:
    policy = parse_policy(
        policy_text(
            allow(
                Condition={
                    "Bool": {"aws:SecureTransport": True},
                    "NumericLessThan": {"aws:MultiFactorAuthAge": 3600},
                    "NumericGreaterThan": {"ex:Ratio": 0.5},
                }
            )
        )
    )
    values = {c.key: c.values for c in policy.statements[0].conditions}
    assert values == {
        "aws:securetransport": ("true",),
        "aws:multifactorauthage": ("3600",),
        "ex:ratio": ("0.5",),
    }


def test_operator_names_accept_ifexists_and_set_qualifiers() -> None:
    policy = parse_policy(
        policy_text(
            allow(
                Condition={
                    "ForAnyValue:StringLikeIfExists": {"aws:TagKeys": "team*"},
                    "forallvalues:stringequals": {"aws:TagKeys": ["a", "b"]},
                }
            )
        )
    )
    names = [c.operator.name for c in policy.statements[0].conditions]
    assert names == ["ForAnyValue:StringLikeIfExists", "ForAllValues:StringEquals"]


def test_set_operator_on_single_valued_key_warns() -> None:
    policy = parse_policy(
        policy_text(allow(Condition={"ForAnyValue:IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))
    )
    assert any("single-valued" in warning for warning in policy.warnings)


def test_plain_operator_on_multivalued_key_warns() -> None:
    policy = parse_policy(policy_text(allow(Condition={"StringEquals": {"aws:TagKeys": "team"}})))
    assert any("multivalued" in warning for warning in policy.warnings)


def test_resource_arn_with_variable_colons_is_counted_outside_the_variable() -> None:
    parse_policy(policy_text(allow(resource="arn:aws:ssm:*:*:session/${aws:username}-*")))
    rejects(policy_text(allow(resource="arn:aws:${aws:username}")), "resource portion")


def test_trust_policy_requires_principal_and_allows_no_resource() -> None:
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    )
    policy = parse_policy(trust, kind="trust")
    assert policy.statements[0].principal == {"Service": "ssm.amazonaws.com"}
    with pytest.raises(MalformedPolicyDocument, match="Principal"):
        parse_policy(policy_text({"Effect": "Allow", "Action": "sts:AssumeRole"}), kind="trust")


def test_policy_size_ignores_whitespace() -> None:
    assert policy_size('{ "a" :\n\t"b c" }') == len('{"a":"bc"}')


def test_deeply_nested_json_is_a_clear_error() -> None:
    rejects("[" * 100000 + "]" * 100000, "Syntax errors")


def test_non_string_input_is_rejected() -> None:
    with pytest.raises(MalformedPolicyDocument):
        parse_policy(b"{}")  # type: ignore[arg-type]


def test_statement_positions_point_at_each_statement() -> None:
    from openssm.iam import statement_positions

    text = '{\n  "Version": "2012-10-17",\n  "Statement": [\n    {"Effect": "Allow", "Action": "*", "Resource": "*"},\n    {"Effect": "Deny",\n     "Action": "*", "Resource": "*"}\n  ]\n}'
    assert statement_positions(text) == [((4, 5), (4, 55)), ((5, 5), (6, 36))]
    single = '{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}, "Version": "2012-10-17"}'
    assert statement_positions(single) == [((1, 15), (1, 65))]
    assert statement_positions("[]") == []
