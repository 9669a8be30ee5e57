"""The parts of just-in-time access that need no server: the grant's policy (evaluated by the IAM
core: exactly the session asked for, until its end and not a second longer), the webhook's signature,
and the CLI's durations, output, and where it finds its credentials and endpoint."""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import sys
from typing import Any

import click
import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.api.access.webhook import retry_delay, signature, verify
from openssm.client.access_api import AccessApi, ApiError
from openssm.client.access_cli import parse_duration, readable
from openssm.iam import AuthzRequest, PolicySource, evaluate, parse_policy
from openssm.iam.principal import Principal
from openssm.security.access_grants import Grant, grant_policy
from openssm.services import AccessSettings

ACCOUNT = "123456789012"
REGION = "eu-west-1"
NODE = "mi-0123456789abcdef0"
OTHER = "mi-0fedcba9876543210"
END = dt.datetime(2026, 12, 1, 10, 0, 0, tzinfo=dt.UTC)
ALICE = Principal(
    arn=f"arn:aws:iam::{ACCOUNT}:user/alice",
    account=ACCOUNT,
    type="User",
    user_id="AIDAALICE",
    username="alice",
)


def grant(holder_type: Any = "user", document: str = "AWS-StartSSHSession") -> Grant:
    return Grant(
        request_id="ar-0123456789abcdef0",
        holder_type=holder_type,
        holder_name="alice" if holder_type == "user" else "Operators",
        requester_name="alice",
        requester_user_id="AIDAALICE" if holder_type == "user" else "AROAOPERATORS:alice",
        region=REGION,
        account=ACCOUNT,
        target=NODE,
        target_arn=f"arn:aws:ssm:{REGION}:{ACCOUNT}:managed-instance/{NODE}",
        document_name=document,
        document_arn=f"arn:aws:ssm:{REGION}::document/{document}",
        expires_at=END,
    )


def decide(the_grant: Grant, principal: Principal, action: str, resource: str, **context: str) -> str:
    policy = parse_policy(json.dumps(grant_policy(the_grant)))
    facts = {key: [value] for key, value in context.items()}
    request = AuthzRequest(principal, action, resource, facts)
    return evaluate([PolicySource("grant", policy)], request).decision


def at(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@given(st.integers(min_value=-3 * 86400, max_value=3 * 86400))
def test_the_target_is_granted_with_the_asked_document_until_the_end_and_not_a_second_longer(
    offset: int,
) -> None:
    the_grant = grant()
    now = END + dt.timedelta(seconds=offset)
    facts = {"aws:CurrentTime": at(now), "openssm:DocumentName": "AWS-StartSSHSession"}
    decision = decide(the_grant, ALICE, "ssm:StartSession", the_grant.target_arn, **facts)
    assert decision == ("allowed" if offset < 0 else "implicitDeny")


def test_only_that_pair_of_target_and_document() -> None:
    the_grant, before = grant(), at(END - dt.timedelta(minutes=5))
    target, document = the_grant.target_arn, the_grant.document_arn
    assert (
        decide(
            the_grant,
            ALICE,
            "ssm:StartSession",
            document,
            **{"aws:CurrentTime": before, "openssm:Target": NODE},
        )
        == "allowed"
    )
    for resource, facts in (
        (target, {"openssm:DocumentName": "SSM-SessionManagerRunShell"}),  # another document there
        (target, {}),  # no document said (never the case: StartSession always says one)
        (document, {"openssm:Target": OTHER}),  # the document lent to another node
        (
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:managed-instance/{OTHER}",
            {"openssm:DocumentName": "AWS-StartSSHSession"},
        ),
    ):
        assert decide(
            the_grant, ALICE, "ssm:StartSession", resource, **{"aws:CurrentTime": before, **facts}
        ) == ("implicitDeny"), (resource, facts)
    assert (
        decide(the_grant, ALICE, "ssm:SendCommand", target, **{"aws:CurrentTime": before}) == "implicitDeny"
    )


def test_own_sessions_on_the_target_may_be_resumed_and_ended() -> None:
    the_grant, before = grant(), at(END - dt.timedelta(minutes=5))
    own = f"arn:aws:ssm:{REGION}:{ACCOUNT}:session/alice-0123456789abcdef0"
    tag = "ssm:resourceTag/aws:ssmmessages:target-id"
    for action in ("ssm:TerminateSession", "ssm:ResumeSession"):
        assert decide(the_grant, ALICE, action, own, **{"aws:CurrentTime": before, tag: NODE}) == "allowed"
        assert (
            decide(the_grant, ALICE, action, own, **{"aws:CurrentTime": before, tag: OTHER}) == "implicitDeny"
        )
    someone_else = f"arn:aws:ssm:{REGION}:{ACCOUNT}:session/bob-0123456789abcdef0"
    assert decide(
        the_grant, ALICE, "ssm:TerminateSession", someone_else, **{"aws:CurrentTime": before, tag: NODE}
    ) == ("implicitDeny")


def test_a_role_s_grant_is_for_the_one_role_session_that_asked() -> None:
    the_grant, before = grant("role"), at(END - dt.timedelta(minutes=5))

    def session(name: str) -> Principal:
        return Principal(
            arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/Operators/{name}", account=ACCOUNT, type="AssumedRole",
            user_id=f"AROAOPERATORS:{name}", username=None, session_name=name, role_name="Operators",
        )  # fmt: skip

    facts = {"aws:CurrentTime": before, "openssm:DocumentName": "AWS-StartSSHSession"}
    assert decide(the_grant, session("alice"), "ssm:StartSession", the_grant.target_arn, **facts) == "allowed"
    assert (
        decide(the_grant, session("mallory"), "ssm:StartSession", the_grant.target_arn, **facts)
        == "implicitDeny"
    )


@given(st.binary(max_size=2048), st.integers(min_value=1_600_000_000, max_value=2_000_000_000))
def test_a_signature_verifies_and_any_change_breaks_it(body: bytes, timestamp: int) -> None:
    secret = b"0123456789abcdef-secret"
    header = signature(secret, body, timestamp)
    assert header.startswith(f"t={timestamp},v1=")
    assert verify(secret, body, header, now=timestamp + 60)
    assert not verify(b"another-secret-of-some-length", body, header, now=timestamp)
    assert not verify(secret, body + b"x", header, now=timestamp)
    assert not verify(secret, body, header, now=timestamp + 301)  # too old: a replay
    assert not verify(secret, body, header.replace(f"t={timestamp}", f"t={timestamp + 1}"), now=timestamp)
    assert not verify(secret, body, "garbage", now=timestamp)


def test_retries_back_off_up_to_the_maximum() -> None:
    settings = AccessSettings(webhook_retry_seconds=2.0, webhook_retry_max_seconds=300.0)
    delays = [retry_delay(attempt, settings) for attempt in range(12)]
    assert delays[:4] == [2.0, 4.0, 8.0, 16.0] and delays[-1] == 300.0
    assert delays == sorted(delays)


@given(st.integers(0, 48), st.integers(0, 59), st.integers(0, 59))
def test_durations(hours: int, minutes: int, seconds: int) -> None:
    text = "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n) or "0s"
    assert parse_duration(text) == hours * 3600 + minutes * 60 + seconds
    assert parse_duration(str(hours * 3600 + minutes * 60 + seconds)) == hours * 3600 + minutes * 60 + seconds


@pytest.mark.parametrize("text", ["", "1x", "h", "1h 30m", "-5m", "1.5h", "30m1h2"])
def test_durations_that_are_not(text: str) -> None:
    with pytest.raises(click.BadParameter):
        parse_duration(text)


def test_times_are_shown_as_the_aws_cli_shows_them() -> None:
    shown = readable(
        {"AccessRequests": [{"CreatedDate": 1764583200.0, "DurationSeconds": 3600, "EndedDate": None}]}
    )
    assert shown == {
        "AccessRequests": [
            {"CreatedDate": "2025-12-01T10:00:00+00:00", "DurationSeconds": 3600, "EndedDate": None}
        ]
    }


def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))


def test_the_cli_calls_the_ssm_endpoint_of_the_profile_signed_for_openssm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    _isolated(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with pytest.raises(ApiError, match="give --endpoint-url"):  # AWS's own SSM endpoint has no such API
        AccessApi.configured(profile=None, region=None, endpoint_url=None)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", "https://ssm.example.internal:8443")
    api = AccessApi.configured(profile=None, region=None, endpoint_url=None)
    assert (api.settings.service, api.settings.region) == ("openssm", "eu-west-1")
    assert api.settings.endpoint_url == "https://ssm.example.internal:8443"
    assert api.client.target_prefix == "OpenSSM_20261201."


def test_credentials_only_botocore_resolves_are_botocore_s(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    _isolated(monkeypatch, tmp_path)
    issued = json.dumps({"Version": 1, "AccessKeyId": "AKIAPROCESS", "SecretAccessKey": "s"})
    (tmp_path / "process.py").write_text(f"print({issued!r})\n")
    (tmp_path / "config").write_text(
        "[profile ops]\nregion = us-east-2\nendpoint_url = http://127.0.0.1:9\n"
        f"credential_process = {sys.executable} {tmp_path / 'process.py'}\n"
    )
    api = AccessApi.configured(profile="ops", region=None, endpoint_url=None)
    assert api.settings.credentials.access_key_id == "AKIAPROCESS"
    assert (api.settings.region, api.settings.endpoint_url) == ("us-east-2", "http://127.0.0.1:9")
    with pytest.raises(ApiError, match="Could not connect to the endpoint URL"):
        api.call("ListAccessRequests", {})
