"""IAM decisions per second for a user with 10 policies x 10 statements, beside the SigV4 cost.

Run: ``.venv/bin/python bench/bench_iam.py [-n N]``. One run measures, for the same StartSession
request: policy evaluation alone (policies parsed once); parse_policy + evaluation, which is what
the server does with the policy texts it loads from the store on every request (parse_policy
remembers recent texts); a cold parse of the ten texts; and header SigV4 verification
(``measure_sigv4`` from bench_auth.py, when present), and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections.abc import Callable

from openssm.iam import AuthzRequest, PolicySource, evaluate, parse_policy
from openssm.iam.principal import Principal

ACCOUNT = "123456789012"
REGION = "us-east-1"
PRINCIPAL = Principal(
    arn=f"arn:aws:iam::{ACCOUNT}:user/alice",
    account=ACCOUNT,
    type="User",
    user_id="AIDAEXAMPLEALICE00000",
    username="alice",
    tags={"team": "ops"},
)
REQUEST = AuthzRequest(
    PRINCIPAL,
    "ssm:StartSession",
    f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0",
    {
        "aws:SourceIp": ["203.0.113.10"],
        "aws:SecureTransport": ["true"],
        "aws:CurrentTime": ["2026-11-28T17:00:00Z"],
        "aws:EpochTime": ["1795971600"],
        "aws:RequestedRegion": [REGION],
        "ssm:resourceTag/Environment": ["dev"],
    },
)


def statement(policy: int, index: int) -> dict[str, object]:
    """A varied mix: other services, wildcards, variables, conditions of several families."""
    kind = index % 5
    if kind == 0:
        return {
            "Effect": "Allow",
            "Action": [f"ec2:Describe{policy}{index}*", "ssm:Describe*"],
            "Resource": "*",
        }
    if kind == 1:
        return {
            "Effect": "Allow",
            "Action": ["ssm:TerminateSession", "ssm:ResumeSession"],
            "Resource": f"arn:aws:ssm:*:{ACCOUNT}:session/${{aws:username}}-*",
        }
    if kind == 2:
        return {
            "Effect": "Deny",
            "Action": "ssm:StartSession",
            "Resource": "*",
            "Condition": {"StringEquals": {"ssm:resourceTag/Environment": f"prod{policy}"}},
        }
    if kind == 3:
        return {
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"NotIpAddress": {"aws:SourceIp": ["203.0.113.0/24", "198.51.100.7/32"]}},
        }
    return {
        "Effect": "Allow",
        "Action": ["ssm:StartSession", "ssm:SendCommand"],
        "Resource": [f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/*", "arn:aws:ssm:*:*:document/AWS-*"],
        "Condition": {
            "BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"},
            "DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"},
            "StringEquals": {"aws:PrincipalTag/team": ["ops", "dev"]},
        },
    }


def policy_texts() -> list[str]:
    return [
        json.dumps({"Version": "2012-10-17", "Statement": [statement(p, i) for i in range(10)]})
        for p in range(10)
    ]


def _rate(n: int, once: Callable[[], object]) -> float:
    once()
    start = time.perf_counter()
    for _ in range(n):
        once()
    return n / (time.perf_counter() - start)


def measure_decisions(n: int) -> float:
    sources = [PolicySource(f"policy{i}", parse_policy(text)) for i, text in enumerate(policy_texts())]
    assert evaluate(sources, REQUEST).decision == "allowed"
    return _rate(n, lambda: evaluate(sources, REQUEST))


def measure_parse_and_decide(n: int) -> float:
    texts = policy_texts()

    def once() -> object:
        sources = [PolicySource(f"policy{i}", parse_policy(text)) for i, text in enumerate(texts)]
        return evaluate(sources, REQUEST)

    return _rate(n, once)


def measure_cold_parse(n: int) -> float:
    """Parses of all ten policies per second, bypassing parse_policy's cache (first sight of a text)."""
    from openssm.iam.policy import _parse

    texts = policy_texts()
    return _rate(n, lambda: [_parse(text, "identity") for text in texts])


def best_of(repeats: int, measure: Callable[[int], float], n: int) -> float:
    """The best rate of several runs: the machine is shared, so slower runs measure other work."""
    return max(measure(n) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5000, help="iterations per measurement")
    parser.add_argument("-r", "--repeats", type=int, default=3, help="runs per measurement (best is shown)")
    args = parser.parse_args()
    decisions = best_of(args.repeats, measure_decisions, args.n)
    parse_decide = best_of(args.repeats, measure_parse_and_decide, args.n)
    cold = best_of(args.repeats, measure_cold_parse, max(args.n // 20, 20))
    print(f"IAM evaluation (10 policies x 10 statements): {decisions:12,.0f} decisions/s")
    print(f"IAM parse_policy + evaluation (server path):  {parse_decide:12,.0f} decisions/s")
    print(f"IAM cold parse of the 10 policies:            {cold:12,.0f} parses/s")
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    try:
        from bench_auth import measure_sigv4
    except ImportError:
        print("SigV4 benchmark (bench/bench_auth.py) not available: no ratio")
        return
    sigv4 = best_of(args.repeats, measure_sigv4, args.n)
    print(f"SigV4 HMAC verification (same request kind):  {sigv4:12,.0f} verifications/s")
    print(f"ratio: one IAM decision costs {sigv4 / decisions:.2f} x one SigV4 verification")
    print(f"ratio: parse + decision costs {sigv4 / parse_decide:.2f} x one SigV4 verification")


if __name__ == "__main__":
    main()
