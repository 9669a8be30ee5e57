"""IAM policy language, pure: parsing and validation, evaluation, conditions, variables, ARNs."""

from openssm.iam.evaluate import (
    AuthzRequest,
    Decision,
    EvaluationResult,
    MatchedStatement,
    PolicySource,
    evaluate,
    principal_context,
    request_context,
)
from openssm.iam.policy import (
    MANAGED_POLICY_MAX_CHARS,
    MalformedPolicyDocument,
    Policy,
    Statement,
    parse_policy,
    policy_size,
    statement_positions,
)
from openssm.iam.principal import Principal

__all__ = [
    "MANAGED_POLICY_MAX_CHARS",
    "AuthzRequest",
    "Decision",
    "EvaluationResult",
    "MalformedPolicyDocument",
    "MatchedStatement",
    "Policy",
    "PolicySource",
    "Principal",
    "Statement",
    "evaluate",
    "parse_policy",
    "policy_size",
    "principal_context",
    "request_context",
    "statement_positions",
]
