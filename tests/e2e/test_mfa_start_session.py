"""MFA the AWS way, with the real AWS CLI and a real agent: a policy that requires MFA for
``ssm:StartSession`` (AWS's documented ``Bool``/``BoolIfExists aws:MultiFactorAuthPresent`` and
``NumericLessThan aws:MultiFactorAuthAge`` patterns) refuses the user's plain access key; the user
sets up a virtual MFA device, calls ``aws sts get-session-token --serial-number … --token-code …``,
and with those credentials ``aws ssm start-session`` opens a shell (through OpenSSM's plugin)."""

from __future__ import annotations

import base64
import json
import pathlib
import subprocess
import sys
import time

import pexpect
import pytest

from openssm.security.login_secrets import totp
from tests.e2e.harness import Agent, Server

pytestmark = pytest.mark.slow

ACCOUNT = "000000000000"
AWS = str(pathlib.Path(sys.executable).parent / "aws")

MFA_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "SessionsOnlyWithRecentMFA",
            "Effect": "Allow",
            "Action": "ssm:StartSession",
            "Resource": [
                "arn:aws:ssm:*:*:managed-instance/*",
                "arn:aws:ssm:*:*:document/SSM-SessionManagerRunShell",
            ],
            "Condition": {
                "Bool": {"aws:MultiFactorAuthPresent": "true"},
                "NumericLessThan": {"aws:MultiFactorAuthAge": "3600"},
            },
        },
        {
            "Sid": "DenySessionsWithoutMFA",
            "Effect": "Deny",
            "Action": "ssm:StartSession",
            "Resource": "*",
            "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}},
        },
        {
            "Sid": "OwnSessions",
            "Effect": "Allow",
            "Action": ["ssm:TerminateSession", "ssm:ResumeSession"],
            "Resource": "arn:aws:ssm:*:*:session/${aws:username}-*",
        },
        {
            "Sid": "SelfManageMFA",
            "Effect": "Allow",
            "Action": ["iam:CreateVirtualMFADevice", "iam:EnableMFADevice", "iam:ListMFADevices"],
            "Resource": ["arn:aws:iam::*:mfa/${aws:username}", "arn:aws:iam::*:user/${aws:username}"],
        },
    ],
}


def aws(server: Server, env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [AWS, "--endpoint-url", server.endpoint, "--output", "json", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (out.returncode == 0) == ok, f"aws {' '.join(args)}: {out.stdout}{out.stderr}"
    return out


def test_start_session_requires_mfa_through_get_session_token(tmp_path: pathlib.Path) -> None:
    server = Server(tmp_path / "server").start()
    agent = Agent(server, tmp_path / "agent")
    try:
        target = agent.register()
        agent.start()
        admin = server.aws_env()
        (tmp_path / "policy.json").write_text(json.dumps(MFA_POLICY))
        aws(server, admin, "iam", "create-user", "--user-name", "dana")
        aws(server, admin, "iam", "put-user-policy", "--user-name", "dana", "--policy-name", "mfa",
            "--policy-document", f"file://{tmp_path / 'policy.json'}")  # fmt: skip
        key = json.loads(aws(server, admin, "iam", "create-access-key", "--user-name", "dana").stdout)[
            "AccessKey"
        ]
        dana = {k: v for k, v in admin.items() if k != "AWS_PROFILE"}
        dana.update(
            AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
            AWS_CONFIG_FILE=str(tmp_path / "none"),
            AWS_ACCESS_KEY_ID=key["AccessKeyId"],
            AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"],
        )

        # The plain access key: refused by the explicit deny (the MFA key is absent from its requests).
        refused = aws(server, dana, "ssm", "start-session", "--target", target, "--document-name",
                      "SSM-SessionManagerRunShell", ok=False)  # fmt: skip
        assert "AccessDeniedException" in refused.stderr and "explicit deny" in refused.stderr

        # Dana sets up a virtual MFA device herself, as the AWS CLI does it.
        seed_file = tmp_path / "dana-seed.txt"
        device = json.loads(
            aws(server, dana, "iam", "create-virtual-mfa-device", "--virtual-mfa-device-name", "dana",
                "--outfile", str(seed_file), "--bootstrap-method", "Base32StringSeed").stdout
        )["VirtualMFADevice"]  # fmt: skip
        serial = device["SerialNumber"]
        assert serial == f"arn:aws:iam::{ACCOUNT}:mfa/dana"
        text = seed_file.read_text().strip()
        seed = base64.b32decode(text + "=" * (-len(text) % 8))
        now = time.time()
        aws(server, dana, "iam", "enable-mfa-device", "--user-name", "dana", "--serial-number", serial,
            "--authentication-code1", totp(seed, now - 30), "--authentication-code2", totp(seed, now))  # fmt: skip

        # get-session-token with the next code: temporary credentials that carry the MFA.
        code = totp(seed, now + 30)
        answer = json.loads(
            aws(server, dana, "sts", "get-session-token", "--serial-number", serial, "--token-code", code,
                "--duration-seconds", "3600").stdout
        )["Credentials"]  # fmt: skip
        assert answer["AccessKeyId"].startswith("ASIA") and answer["SessionToken"] and answer["Expiration"]
        replayed = aws(
            server,
            dana,
            "sts",
            "get-session-token",
            "--serial-number",
            serial,
            "--token-code",
            code,
            ok=False,
        )
        assert "AccessDenied" in replayed.stderr  # a code is good once
        session = {
            **dana,
            "AWS_ACCESS_KEY_ID": answer["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": answer["SecretAccessKey"],
            "AWS_SESSION_TOKEN": answer["SessionToken"],
        }
        who = json.loads(aws(server, session, "sts", "get-caller-identity").stdout)
        assert who["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/dana"

        # With them, the real CLI starts the session and execs OpenSSM's session-manager-plugin.
        shell = pexpect.spawn(
            AWS,
            ["ssm", "start-session", "--target", target, "--document-name", "SSM-SessionManagerRunShell",
             "--endpoint-url", server.endpoint],
            env=session, timeout=30, encoding="utf-8", dimensions=(24, 80),
        )  # fmt: skip
        shell.expect(r"Starting session with SessionId: (dana-[0-9a-f]{17})")
        session_id = shell.match.group(1)
        shell.sendline("echo $((6*7))")
        shell.expect("42")
        aws(server, session, "ssm", "terminate-session", "--session-id", session_id)
        shell.expect(pexpect.EOF)
    finally:
        agent.stop()
        server.stop()
