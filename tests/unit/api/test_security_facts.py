from __future__ import annotations

import datetime as dt
import pathlib

from openssm.iam.principal import Principal
from openssm.security.authorization import denial_message, request_context
from openssm.security.facts import RequestFacts, source_ip_and_scheme
from openssm.security.identity import Identity
from openssm.services import ServerConfig

PROXIED = ServerConfig(data_dir=pathlib.Path("/nonexistent"), trusted_proxies=("10.0.0.0/8",))
DIRECT = ServerConfig(data_dir=pathlib.Path("/nonexistent"))


def test_forwarded_headers_only_from_trusted_proxies() -> None:
    assert source_ip_and_scheme("203.0.113.9", "1.2.3.4", "https", tls=False, config=DIRECT) == (
        "203.0.113.9",
        False,
    )
    assert source_ip_and_scheme("203.0.113.9", "1.2.3.4", "https", tls=False, config=PROXIED) == (
        "203.0.113.9",
        False,
    )
    assert source_ip_and_scheme("10.1.1.1", "198.51.100.7", "https", tls=False, config=PROXIED) == (
        "198.51.100.7",
        True,
    )
    # A client-written left-most entry is ignored; the right-most untrusted hop is the client.
    assert source_ip_and_scheme(
        "10.1.1.1", "6.6.6.6, 198.51.100.7, 10.2.2.2", None, tls=False, config=PROXIED
    ) == (
        "198.51.100.7",
        False,
    )
    assert source_ip_and_scheme("10.1.1.1", "not-an-ip", None, tls=True, config=PROXIED) == ("10.1.1.1", True)
    # A proxy that appends to X-Forwarded-Proto: the client's own "https" claim on the left is ignored.
    assert source_ip_and_scheme("10.1.1.1", "198.51.100.7", "https, http", tls=False, config=PROXIED) == (
        "198.51.100.7",
        False,
    )


def _identity(principal: Principal) -> Identity:
    return Identity(principal, "AKIA", False, "us-east-1", "ssm")


def test_request_context_for_users_and_roles() -> None:
    facts = RequestFacts("198.51.100.7", True, "aws-cli/1", "us-east-1")
    now = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
    user = Principal(
        "arn:aws:iam::123456789012:user/alice", "123456789012", "User", "AIDAX", "alice", tags={"Team": "ops"}
    )
    context = request_context(_identity(user), facts, now, {"ssm:SessionDocumentAccessCheck": ["false"]})
    assert context["aws:sourceip"] == ["198.51.100.7"] and context["aws:securetransport"] == ["true"]
    assert context["aws:username"] == ["alice"] and context["aws:userid"] == ["AIDAX"]
    assert context["aws:principaltag/team"] == ["ops"] and context["aws:principaltype"] == ["User"]
    assert context["aws:currenttime"] == ["2026-11-28T12:00:00Z"] and context["aws:epochtime"] == [
        "1795867200"
    ]
    assert context["aws:requestedregion"] == ["us-east-1"] and context["aws:useragent"] == ["aws-cli/1"]
    assert context["ssm:sessiondocumentaccesscheck"] == ["false"]
    role = Principal(
        "arn:aws:sts::123456789012:assumed-role/R/mi-0123456789abcdef0",
        "123456789012",
        "AssumedRole",
        "AROAX:mi-0123456789abcdef0",
        None,
        session_name="mi-0123456789abcdef0",
        role_name="R",
    )
    role_context = request_context(_identity(role), facts, now, {})
    assert "aws:username" not in role_context
    assert role_context["aws:principalarn"] == ["arn:aws:iam::123456789012:role/R"]


def test_denial_messages() -> None:
    assert denial_message("arn:u", "ssm:StartSession", "arn:r", explicit=False) == (
        "User: arn:u is not authorized to perform: ssm:StartSession on resource: arn:r "
        "because no identity-based policy allows the ssm:StartSession action"
    )
    assert denial_message("arn:u", "ssm:StartSession", "arn:r", explicit=True).endswith(
        "with an explicit deny in an identity-based policy"
    )
