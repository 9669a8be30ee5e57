"""STS GetSessionToken, as AWS has it, with the server's one clock moved by the test: temporary
credentials with and without an MFA code, what they may call, the MFA keys their requests carry
(``aws:MultiFactorAuthPresent``, ``aws:MultiFactorAuthAge``), the TOTP replay guard, and expiry."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import AsyncIterator

import pytest
from tests.support.inprocess_api import ACCOUNT, Api, running_api

from openssm.security.login_secrets import new_totp_seed, totp
from openssm.store.iam import mfa_devices

SERIAL = f"arn:aws:iam::{ACCOUNT}:mfa/carol-phone"
# AWS's documented patterns: allow only within an hour of the MFA code, and refuse without MFA.
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "ssm:DescribeSessions",
            "Resource": "*",
            "Condition": {"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}},
        },
        {"Effect": "Allow", "Action": ["ssm:DescribeInstanceInformation", "iam:GetUser"], "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "ssm:DescribeInstanceInformation",
            "Resource": "*",
            "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}},
        },
    ],
}


@pytest.fixture
async def api(tmp_path: pathlib.Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as started:
        yield started


async def _enable_mfa(api: Api, user: str) -> bytes:
    seed = new_totp_seed()
    engine = api.services.engine
    await mfa_devices.create(engine, "carol-phone", api.services.cipher.encrypt(seed))
    device = await mfa_devices.get(engine, "carol-phone")
    assert device is not None
    step = int(api.clock.now().timestamp() // 30)
    await mfa_devices.enable(engine, device, user, api.clock.now(), step)
    return seed


def _code(api: Api, seed: bytes, steps_ahead: int = 0) -> str:
    return totp(seed, api.clock.now().timestamp() + 30 * steps_ahead)


def _credentials(reply: object) -> tuple[str, str, str]:
    from tests.support.inprocess_api import Reply

    assert isinstance(reply, Reply) and reply.status == 200, getattr(reply, "text", reply)
    return reply.xml("AccessKeyId"), reply.xml("SecretAccessKey"), reply.xml("SessionToken")


async def test_session_credentials_without_mfa_act_as_the_user_within_aws_limits(api: Api) -> None:
    carol = await api.user("carol", POLICY)
    reply = await api.query("sts", {"Action": "GetSessionToken"}, carol)
    session = _credentials(reply)
    assert session[0].startswith("ASIA")
    # Twelve hours by default, by the server's clock.
    expires = dt.datetime.fromisoformat(reply.xml("Expiration").replace("Z", "+00:00"))
    assert expires == api.clock.now().replace(microsecond=0) + dt.timedelta(hours=12)
    who = await api.query("sts", {"Action": "GetCallerIdentity"}, session)
    assert who.xml("Arn") == f"arn:aws:iam::{ACCOUNT}:user/carol"
    # Present and false: BoolIfExists … "false" refuses (a long-term key carries no such key either way).
    denied = await api.ssm("DescribeInstanceInformation", {}, session)
    assert denied.code == "AccessDeniedException" and "explicit deny" in denied.text
    assert (await api.ssm("DescribeInstanceInformation", {}, carol)).code == "AccessDeniedException"
    # No IAM call without MFA (AWS answers as if the token were invalid); no further session token.
    iam = await api.query("iam", {"Action": "GetUser"}, session)
    assert (iam.status, iam.code) == (403, "InvalidClientTokenId")
    assert (await api.query("iam", {"Action": "GetUser"}, carol)).status == 200
    again = await api.query("sts", {"Action": "GetSessionToken"}, session)
    assert (again.status, again.code) == (403, "AccessDenied")
    assert "Cannot call GetSessionToken with session credentials" in again.text
    # The credentials end when the clock says so.
    api.clock.advance(12 * 3600 - 1)
    assert (await api.query("sts", {"Action": "GetCallerIdentity"}, session)).status == 200
    api.clock.advance(1)
    expired = await api.query("sts", {"Action": "GetCallerIdentity"}, session)
    assert (expired.status, expired.code) == (403, "ExpiredToken")


@pytest.mark.parametrize(
    ("seconds", "word"), [("899", "greater than or equal to 900"), ("129601", "less than or equal to 129600")]
)
async def test_duration_outside_aws_limits_is_refused(api: Api, seconds: str, word: str) -> None:
    carol = await api.user("carol", POLICY)
    reply = await api.query("sts", {"Action": "GetSessionToken", "DurationSeconds": seconds}, carol)
    assert reply.code == "ValidationError" and word in reply.text


async def test_mfa_session_credentials_carry_mfa_and_its_age(api: Api) -> None:
    carol = await api.user("carol", POLICY)
    seed = await _enable_mfa(api, "carol")
    # The codes that enabled the device are spent; the next step's code is good.
    spent = await api.query(
        "sts", {"Action": "GetSessionToken", "SerialNumber": SERIAL, "TokenCode": _code(api, seed)}, carol
    )
    assert (spent.status, spent.code) == (
        403,
        "AccessDenied",
    ) and "invalid MFA one time pass code" in spent.text
    code = _code(api, seed, 1)
    form = {"Action": "GetSessionToken", "SerialNumber": SERIAL, "TokenCode": code, "DurationSeconds": "7200"}
    session = _credentials(await api.query("sts", form, carol))
    # A code is good once, on any node: the replay guard is in the store.
    replay = await api.query("sts", form, carol)
    assert (replay.status, replay.code) == (403, "AccessDenied")
    wrong = await api.query(
        "sts", {**form, "SerialNumber": f"arn:aws:iam::{ACCOUNT}:mfa/someone-else"}, carol
    )
    assert "verify your MFA serial number" in wrong.text
    # MFA present: the Deny does not apply, and the age is within the hour.
    assert (await api.ssm("DescribeInstanceInformation", {}, session)).status == 200
    assert (await api.ssm("DescribeSessions", {"State": "Active"}, session)).status == 200
    assert (await api.query("iam", {"Action": "GetUser"}, session)).status == 200  # IAM with MFA: allowed
    # Long-term keys carry no age: NumericLessThan does not hold.
    assert (await api.ssm("DescribeSessions", {"State": "Active"}, carol)).code == "AccessDeniedException"
    # An hour after the code, the age condition no longer holds (the credentials still live).
    api.clock.advance(3599)
    assert (await api.ssm("DescribeSessions", {"State": "Active"}, session)).status == 200
    api.clock.advance(1)
    assert (await api.ssm("DescribeSessions", {"State": "Active"}, session)).code == "AccessDeniedException"
    assert (await api.ssm("DescribeInstanceInformation", {}, session)).status == 200
    api.clock.advance(3600)
    assert (await api.query("sts", {"Action": "GetCallerIdentity"}, session)).code == "ExpiredToken"
