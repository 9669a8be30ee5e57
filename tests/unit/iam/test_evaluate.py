"""The decision algorithm, NotAction/NotResource, matched statements and AWS's SSM example policies."""

from __future__ import annotations

import pathlib
import re

from hypothesis import given
from hypothesis import strategies as st

from openssm.iam import AuthzRequest, MatchedStatement, PolicySource, evaluate, parse_policy

from .helpers import ACCOUNT, allow, decide, deny, policy_text, user

REGION = "ap-northeast-1"


def instance(iid: str = "i-0123456789abcdef0", region: str = REGION) -> str:
    return f"arn:aws:ec2:{region}:{ACCOUNT}:instance/{iid}"


def document(name: str, account: str = "") -> str:
    return f"arn:aws:ssm:{REGION}:{account}:document/{name}"


def session(sid: str) -> str:
    return f"arn:aws:ssm:{REGION}:{ACCOUNT}:session/{sid}"


# -- the algorithm --------------------------------------------------------------------------------
statement_specs = st.lists(st.tuples(st.sampled_from(["Allow", "Deny"]), st.booleans()), max_size=6)


@given(policies=st.lists(statement_specs, min_size=1, max_size=3))
def test_deny_beats_allow_beats_implicit_deny(policies: list[list[tuple[str, bool]]]) -> None:
    texts = []
    for statements in policies:
        built = [
            {"Effect": effect, "Action": "ssm:StartSession" if applies else "ssm:Other", "Resource": "*"}
            for effect, applies in statements
        ] or [{"Effect": "Allow", "Action": "ssm:Other", "Resource": "*"}]
        texts.append(policy_text(*built))
    result = decide(texts, "ssm:StartSession")
    flat = [
        (p, i, effect)
        for p, statements in enumerate(policies)
        for i, (effect, applies) in enumerate(statements)
        if applies
    ]
    denies = [(p, i) for p, i, effect in flat if effect == "Deny"]
    allows = [(p, i) for p, i, effect in flat if effect == "Allow"]
    if denies:
        assert result.decision == "explicitDeny"
        assert [(int(m.source.removeprefix("policy")), m.index) for m in result.matched] == denies
    elif allows:
        assert result.decision == "allowed"
        assert [(int(m.source.removeprefix("policy")), m.index) for m in result.matched] == allows
    else:
        assert result.decision == "implicitDeny"
        assert result.matched == ()


@given(order=st.permutations([0, 1, 2]))
def test_statement_and_policy_order_does_not_matter(order: list[int]) -> None:
    statements = [allow("ssm:*"), deny("ssm:StartSession"), allow("ec2:*")]
    text = policy_text(*[statements[i] for i in order])
    assert decide(text, "ssm:StartSession").decision == "explicitDeny"
    assert decide(text, "ssm:DescribeSessions").allowed
    texts = [policy_text(statements[i]) for i in order]
    assert decide(texts, "ssm:StartSession").decision == "explicitDeny"


def test_no_policies_is_implicit_deny() -> None:
    assert evaluate([], AuthzRequest(user(), "ssm:StartSession", "*", {})).decision == "implicitDeny"


def test_matched_statement_reports_source_index_and_sid() -> None:
    sources = [
        PolicySource(
            "arn:aws:iam::123456789012:policy/ops",
            parse_policy(policy_text(allow("ec2:*"), allow("ssm:*", Sid="Ssm"))),
        ),
        PolicySource(
            "user/alice/inline/extra", parse_policy(policy_text(deny("ssm:Terminate*", Sid="NoKill")))
        ),
    ]
    allowed = evaluate(sources, AuthzRequest(user(), "ssm:StartSession", "*", {}))
    assert allowed.matched == (MatchedStatement("arn:aws:iam::123456789012:policy/ops", 1, "Ssm", "Allow"),)
    denied = evaluate(sources, AuthzRequest(user(), "ssm:TerminateSession", "*", {}))
    assert denied.decision == "explicitDeny"
    assert denied.matched == (MatchedStatement("user/alice/inline/extra", 0, "NoKill", "Deny"),)


# -- NotAction / NotResource ------------------------------------------------------------------------
def test_not_action_allow_grants_everything_else() -> None:
    text = policy_text({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    assert decide(text, "ssm:StartSession").allowed
    assert decide(text, "ec2:TerminateInstances").allowed
    assert not decide(text, "iam:CreateUser").allowed
    assert not decide(text, "IAM:createuser").allowed


def test_not_action_deny_with_allow_all() -> None:
    text = policy_text(
        allow(), {"Effect": "Deny", "NotAction": ["ssm:Describe*", "sts:GetCallerIdentity"], "Resource": "*"}
    )
    assert decide(text, "ssm:DescribeSessions").allowed
    assert decide(text, "sts:GetCallerIdentity").allowed
    assert decide(text, "ssm:StartSession").decision == "explicitDeny"


def test_not_resource() -> None:
    text = policy_text({"Effect": "Allow", "Action": "ssm:StartSession", "NotResource": instance("i-secret")})
    assert decide(text, "ssm:StartSession", instance("i-other")).allowed
    assert not decide(text, "ssm:StartSession", instance("i-secret")).allowed
    deny_text = policy_text(
        allow(), {"Effect": "Deny", "Action": "*", "NotResource": "arn:aws:ssm:*:*:document/AWS-*"}
    )
    assert decide(deny_text, "ssm:StartSession", document("AWS-StartSSHSession")).allowed
    assert decide(deny_text, "ssm:StartSession", document("Custom", ACCOUNT)).decision == "explicitDeny"


def test_not_resource_with_unresolvable_variable_excludes_nothing() -> None:
    text = policy_text(
        allow(),
        {
            "Effect": "Deny",
            "Action": "ssm:TerminateSession",
            "NotResource": "arn:aws:ssm:*:*:session/${aws:username}-*",
        },
    )
    from .helpers import role_session

    assert (
        decide(text, "ssm:TerminateSession", session("carol-1"), principal=role_session()).decision
        == "explicitDeny"
    )
    assert decide(text, "ssm:TerminateSession", session("alice-1")).allowed


# -- AWS SSM documentation examples (reference §1.9; expected outcomes as stated there) ----------------
QUICKSTART_END_USER = policy_text(
    allow(
        "ssm:StartSession",
        [
            instance("i-1234567890abcdef0"),
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/SSM-SessionManagerRunShell",
        ],
    ),
    allow(
        [
            "ssm:DescribeSessions",
            "ssm:GetConnectionStatus",
            "ssm:DescribeInstanceInformation",
            "ec2:DescribeInstances",
        ],
        "*",
    ),
    allow(["ssm:TerminateSession", "ssm:ResumeSession"], "arn:aws:ssm:*:*:session/${aws:username}-*"),
    allow("ssmmessages:OpenDataChannel", "arn:aws:ssm:*:*:session/${aws:userid}-*"),
)


def test_quickstart_end_user() -> None:
    assert decide(QUICKSTART_END_USER, "ssm:StartSession", instance("i-1234567890abcdef0")).allowed
    assert not decide(QUICKSTART_END_USER, "ssm:StartSession", instance("i-0000000000000000f")).allowed
    assert decide(QUICKSTART_END_USER, "ssm:TerminateSession", session("alice-1a2b3c4d5e")).allowed
    assert not decide(QUICKSTART_END_USER, "ssm:TerminateSession", session("bob-1a2b3c4d5e")).allowed
    assert decide(QUICKSTART_END_USER, "ssm:DescribeSessions").allowed


def test_quickstart_administrator() -> None:
    text = policy_text(
        allow(
            "ssm:StartSession",
            [
                "arn:aws:ec2:*:*:instance/*",
                "arn:aws:ssm:*:*:managed-instance/*",
                "arn:aws:ssm:*:*:document/*",
            ],
        ),
        allow(["ssm:TerminateSession", "ssm:ResumeSession"], "arn:aws:ssm:*:*:session/*"),
    )
    assert decide(text, "ssm:StartSession", instance("i-any", "eu-west-3")).allowed
    assert decide(
        text, "ssm:StartSession", f"arn:aws:ssm:{REGION}:{ACCOUNT}:managed-instance/mi-0123"
    ).allowed
    assert decide(text, "ssm:TerminateSession", session("bob-1")).allowed


def test_restrict_access_based_on_tags() -> None:
    text = policy_text(
        allow(
            "ssm:StartSession",
            "arn:aws:ec2:*:*:instance/*",
            Condition={"StringLike": {"ssm:resourceTag/Finance": ["WebServers"]}},
        ),
    )
    target = instance()
    assert not decide(text, "ssm:StartSession", target).allowed  # untagged
    assert not decide(text, "ssm:StartSession", target, {"ssm:resourceTag/Finance": ["DbServers"]}).allowed
    assert decide(text, "ssm:StartSession", target, {"ssm:resourceTag/Finance": ["WebServers"]}).allowed
    prod_deny = deny("ssm:StartSession", Condition={"StringEquals": {"ssm:resourceTag/Environment": "Prod"}})
    layered = policy_text(allow("ssm:*"), prod_deny)
    assert decide(layered, "ssm:StartSession", target, {"ssm:resourceTag/Environment": ["Dev"]}).allowed
    assert (
        decide(layered, "ssm:StartSession", target, {"ssm:resourceTag/Environment": ["Prod"]}).decision
        == "explicitDeny"
    )


def test_enforce_document_permission_check() -> None:
    text = policy_text(
        allow(
            "ssm:StartSession",
            [instance(), "arn:aws:ssm:*:*:document/AWS-StartPortForwardingSession"],
            Condition={"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}},
        )
    )
    # No DocumentName: the server puts SessionDocumentAccessCheck=false on the target check.
    assert not decide(
        text, "ssm:StartSession", instance(), {"ssm:SessionDocumentAccessCheck": ["false"]}
    ).allowed
    # DocumentName given: key absent, both checks run.
    assert decide(text, "ssm:StartSession", instance()).allowed
    assert decide(text, "ssm:StartSession", document("AWS-StartPortForwardingSession")).allowed
    assert not decide(text, "ssm:StartSession", document("AWS-StartSSHSession")).allowed


def test_port_forwarding_only() -> None:
    text = policy_text(
        allow("ssm:StartSession", [instance(), "arn:aws:ssm:*::document/AWS-StartPortForwardingSession"])
    )
    assert decide(text, "ssm:StartSession", document("AWS-StartPortForwardingSession")).allowed
    assert not decide(text, "ssm:StartSession", document("SSM-SessionManagerRunShell", ACCOUNT)).allowed


def test_preferences_lock_down() -> None:
    run_shell = f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/SSM-SessionManagerRunShell"
    text = policy_text(
        allow("ssm:*"),
        deny(
            ["ssm:CreateDocument", "ssm:GetDocument", "ssm:UpdateDocument", "ssm:DeleteDocument"], run_shell
        ),
    )
    assert decide(text, "ssm:UpdateDocument", run_shell).decision == "explicitDeny"
    assert decide(text, "ssm:UpdateDocument", f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/Other").allowed


# -- the operator's two policies, verbatim from operator-workflow.md ------------------------------
def operator_policies() -> tuple[str, str]:
    here = pathlib.Path(__file__).with_name("operator_policies.md")
    blocks = re.findall(r"```json\n(.*?)```", here.read_text(), re.S)
    return blocks[0], blocks[1]


POLICY_1, POLICY_2 = operator_policies()
ALLOWED_IP = {"aws:SourceIp": ["203.0.113.10"]}


def op_decide(
    action: str, resource: str, context: dict[str, list[str]] | None = None, name: str = "alice"
) -> str:
    return decide(
        [POLICY_1, POLICY_2], action, resource, {**ALLOWED_IP, **(context or {})}, principal=user(name)
    ).decision


def test_operator_policies_parse() -> None:
    assert [s.effect for s in parse_policy(POLICY_1).statements] == ["Allow", "Allow", "Allow"]
    assert parse_policy(POLICY_2).statements[0].effect == "Deny"


def test_operator_policy_1_listed_documents_only() -> None:
    # With --document-name (key absent): BoolIfExists holds, so the instance and listed documents pass.
    assert op_decide("ssm:StartSession", instance()) == "allowed"
    assert op_decide("ssm:StartSession", document("AWS-StartPortForwardingSession")) == "allowed"
    assert op_decide("ssm:StartSession", document("AWS-StartSSHSession")) == "allowed"
    assert op_decide("ssm:StartSession", document("SSM-SessionManagerRunShell", ACCOUNT)) == "allowed"
    assert op_decide("ssm:StartSession", document("AWS-StartInteractiveCommand")) == "implicitDeny"
    assert op_decide("ssm:StartSession", instance(region="us-east-1")) == "implicitDeny"


def test_operator_policy_1_typo_ture_never_matches_a_present_key() -> None:
    # Without --document-name the key is present ("false"); "ture" is not a boolean: no match.
    assert (
        op_decide("ssm:StartSession", instance(), {"ssm:SessionDocumentAccessCheck": ["false"]})
        == "implicitDeny"
    )
    assert (
        op_decide("ssm:StartSession", instance(), {"ssm:SessionDocumentAccessCheck": ["true"]})
        == "implicitDeny"
    )


def test_operator_policy_1_own_sessions_only() -> None:
    assert op_decide("ssm:TerminateSession", session("alice-0123456789abcdef0")) == "allowed"
    assert op_decide("ssm:ResumeSession", session("alice-0123456789abcdef0")) == "allowed"
    assert op_decide("ssm:TerminateSession", session("bob-0123456789abcdef0")) == "implicitDeny"
    assert op_decide("ssm:TerminateSession", session("bob-0123456789abcdef0"), name="*") == "implicitDeny"


def test_operator_policy_1_read_only_actions() -> None:
    for action in [
        "ssm:DescribeSessions",
        "ssm:GetConnectionStatus",
        "ec2:DescribeInstances",
        "ssm-guiconnect:GetConnection",
    ]:
        assert op_decide(action, "*") == "allowed"
    assert op_decide("ssm:DeleteDocument", "*") == "implicitDeny"


def test_operator_policy_2_denies_everything_from_other_addresses() -> None:
    outside = {"aws:SourceIp": ["192.0.2.99"]}
    assert op_decide("ssm:StartSession", instance(), outside) == "explicitDeny"
    assert op_decide("ssm:DescribeSessions", "*", outside) == "explicitDeny"
    assert op_decide("ssm:DescribeSessions", "*", {"aws:SourceIp": ["198.51.100.7"]}) == "allowed"
    # The deny applies even to actions policy 1 never granted, and names the deciding statement.
    result = decide([POLICY_1, POLICY_2], "iam:CreateUser", "*", outside)
    assert result.decision == "explicitDeny"
    assert [(m.source, m.index, m.effect) for m in result.matched] == [("policy1", 0, "Deny")]


# -- AWS IAM User Guide examples (policy text as in the guide; outcomes from the documented rules) -----
def test_s3_home_directory_example() -> None:
    text = policy_text(
        allow(
            "s3:ListBucket",
            "arn:aws:s3:::amzn-s3-demo-bucket",
            Condition={"StringLike": {"s3:prefix": ["home/${aws:username}/*"]}},
        ),
        allow(["s3:GetObject", "s3:PutObject"], "arn:aws:s3:::amzn-s3-demo-bucket/home/${aws:username}/*"),
    )
    bucket = "arn:aws:s3:::amzn-s3-demo-bucket"
    assert decide(text, "s3:PutObject", f"{bucket}/home/alice/notes.txt").allowed
    assert not decide(text, "s3:PutObject", f"{bucket}/home/bob/notes.txt").allowed
    assert decide(text, "s3:ListBucket", bucket, {"s3:prefix": ["home/alice/docs/"]}).allowed
    assert not decide(text, "s3:ListBucket", bucket, {"s3:prefix": ["home/bob/"]}).allowed
    assert not decide(text, "s3:ListBucket", bucket).allowed  # no prefix given


def test_date_range_example() -> None:
    text = policy_text(
        allow(
            "ssm:StartSession",
            Condition={
                "DateGreaterThan": {"aws:CurrentTime": "2020-04-01T00:00:00Z"},
                "DateLessThan": {"aws:CurrentTime": "2020-06-30T23:59:59Z"},
            },
        )
    )
    assert decide(text, "ssm:StartSession", context={"aws:CurrentTime": ["2020-05-15T12:00:00Z"]}).allowed
    assert not decide(text, "ssm:StartSession", context={"aws:CurrentTime": ["2020-07-01T00:00:00Z"]}).allowed
    assert not decide(text, "ssm:StartSession").allowed


def test_deny_without_mfa_example() -> None:
    text = policy_text(
        allow(),
        {
            "Sid": "DenyAllExceptListedIfNoMFA",
            "Effect": "Deny",
            "NotAction": ["iam:ChangePassword", "iam:GetUser", "sts:GetSessionToken"],
            "Resource": "*",
            "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}},
        },
    )
    # Long-term keys carry no aws:MultiFactorAuthPresent: BoolIfExists holds, the Deny applies.
    denied = decide(text, "ssm:StartSession")
    assert denied.decision == "explicitDeny" and denied.matched[0].sid == "DenyAllExceptListedIfNoMFA"
    assert decide(text, "iam:GetUser").allowed
    assert decide(text, "ssm:StartSession", context={"aws:MultiFactorAuthPresent": ["true"]}).allowed
    assert (
        decide(text, "ssm:StartSession", context={"aws:MultiFactorAuthPresent": ["false"]}).decision
        == "explicitDeny"
    )


def test_null_token_issue_time_example() -> None:
    text = policy_text(allow("ssm:StartSession", Condition={"Null": {"aws:TokenIssueTime": "true"}}))
    assert decide(text, "ssm:StartSession").allowed  # long-term credentials
    assert not decide(
        text, "ssm:StartSession", context={"aws:TokenIssueTime": ["2026-11-28T00:00:00Z"]}
    ).allowed


def test_tag_keys_set_operator_examples() -> None:
    only_listed = policy_text(
        allow(
            "ssm:AddTagsToResource",
            Condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}},
        )
    )
    assert decide(only_listed, "ssm:AddTagsToResource", context={"aws:TagKeys": ["environment"]}).allowed
    assert not decide(
        only_listed, "ssm:AddTagsToResource", context={"aws:TagKeys": ["environment", "owner"]}
    ).allowed
    any_listed = policy_text(
        allow(
            "ssm:AddTagsToResource",
            Condition={"ForAnyValue:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}},
        )
    )
    assert decide(
        any_listed, "ssm:AddTagsToResource", context={"aws:TagKeys": ["owner", "cost-center"]}
    ).allowed
    assert not decide(any_listed, "ssm:AddTagsToResource", context={"aws:TagKeys": ["owner"]}).allowed
    assert not decide(any_listed, "ssm:AddTagsToResource").allowed


action_patterns = st.lists(
    st.sampled_from(["ssm:*", "ssm:Start*", "ssm:?tartSession", "ec2:*", "*", "iam:Get*"]),
    min_size=1,
    max_size=3,
)
request_actions = st.sampled_from(
    ["ssm:StartSession", "SSM:startsession", "ec2:DescribeInstances", "iam:GetUser", "sts:GetCallerIdentity"]
)


@given(patterns=action_patterns, action=request_actions)
def test_not_action_is_the_complement_of_action(patterns: list[str], action: str) -> None:
    with_action = decide(policy_text(allow(patterns)), action).allowed
    with_not_action = decide(
        policy_text({"Effect": "Allow", "NotAction": patterns, "Resource": "*"}), action
    ).allowed
    assert with_not_action == (not with_action)


resource_patterns = st.lists(
    st.sampled_from(
        [
            "arn:aws:ssm:*:*:session/${aws:username}-*",
            "arn:aws:ec2:*:*:instance/i-1*",
            "arn:aws:ssm:*::document/AWS-*",
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:document/*",
            "*",
        ]
    ),
    min_size=1,
    max_size=3,
)
request_resources = st.sampled_from(
    [
        instance("i-1abc"),
        instance("i-2abc"),
        session("alice-1"),
        session("bob-1"),
        document("AWS-StartSSHSession"),
        document("Mine", ACCOUNT),
        "*",
    ]
)


@given(patterns=resource_patterns, resource=request_resources)
def test_not_resource_is_the_complement_of_resource(patterns: list[str], resource: str) -> None:
    with_resource = decide(
        policy_text(allow("ssm:StartSession", patterns)), "ssm:StartSession", resource
    ).allowed
    not_resource = {"Effect": "Allow", "Action": "ssm:StartSession", "NotResource": patterns}
    assert decide(policy_text(not_resource), "ssm:StartSession", resource).allowed == (not with_resource)


@given(
    effect=st.sampled_from(["Allow", "Deny"]),
    base=st.sampled_from(["StringEquals", "StringNotEquals", "StringLike", "IpAddress", "NotIpAddress"]),
    qualifier=st.sampled_from(["", "ForAnyValue:", "ForAllValues:"]),
    present=st.booleans(),
)
def test_ifexists_equals_base_operator_when_key_present_and_true_when_absent(
    effect: str, base: str, qualifier: str, present: bool
) -> None:
    value = "10.0.0.0/8" if "Ip" in base else "x*"
    request_value = "10.1.2.3" if "Ip" in base else "xy"

    def statement(operator: str) -> dict[str, object]:
        return {"Effect": effect, "Action": "*", "Resource": "*", "Condition": {operator: {"ex:Key": value}}}

    context = {"ex:Key": [request_value]} if present else {}
    with_if_exists = decide(
        policy_text(statement(f"{qualifier}{base}IfExists")), "ssm:StartSession", context=context
    )
    plain = decide(policy_text(statement(f"{qualifier}{base}")), "ssm:StartSession", context=context)
    if present:
        assert with_if_exists.decision == plain.decision
    else:
        assert with_if_exists.decision == ("allowed" if effect == "Allow" else "explicitDeny")
