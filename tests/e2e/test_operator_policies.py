"""The operator workflow of reference/operator-workflow.md, verbatim, with the real AWS CLI.

Server in the policies' account and region (123456789012, ap-northeast-1); the IAM steps, then
sessions as the new user under Policy 1 (documents and own sessions) and Policy 2 (source IP).
"""

from __future__ import annotations

import copy
import json
import pathlib
import subprocess
import sys

import pexpect
import pytest

from tests.e2e.harness import Agent, Server

pytestmark = pytest.mark.slow

ACCOUNT = "123456789012"
REGION = "ap-northeast-1"

POLICY_1 = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["ssm:StartSession", "ssm:SendCommand"],
            "Resource": [
                "arn:aws:ec2:ap-northeast-1:123456789012:instance/*",
                "arn:aws:ssm:ap-northeast-1::document/AWS-StartPortForwardingSession",
                "arn:aws:ssm:ap-northeast-1:123456789012:document/SSM-SessionManagerRunShell",
                "arn:aws:ssm:ap-northeast-1::document/AWS-StartSSHSession",
            ],
            "Condition": {"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "ture"}},
        },
        {
            "Effect": "Allow",
            "Action": [
                "ssm:DescribeSessions",
                "ssm:GetConnectionStatus",
                "ssm:DescribeInstanceInformation",
                "ssm:DescribeInstanceProperties",
                "ec2:DescribeInstances",
                "ssm-guiconnect:StartConnection",
                "ssm-guiconnect:GetConnection",
                "ssm-guiconnect:CancelConnection",
            ],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Action": ["ssm:TerminateSession", "ssm:ResumeSession"],
            "Resource": ["arn:aws:ssm:ap-northeast-1:123456789012:session/${aws:username}-*"],
        },
    ],
}

POLICY_2 = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Condition": {"NotIpAddress": {"aws:SourceIp": ["203.0.113.10/32", "198.51.100.7/32"]}},
            "Action": "*",
            "Resource": "*",
            "Effect": "Deny",
        }
    ],
}

AWS = str(pathlib.Path(sys.executable).parent / "aws")


class Cli:
    def __init__(self, server: Server, env: dict[str, str]) -> None:
        self.server = server
        self.env = env

    def run(self, *args: str, expect_ok: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [AWS, "--endpoint-url", self.server.endpoint, "--output", "json", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if expect_ok:
            assert out.returncode == 0, f"aws {' '.join(args)}: {out.stderr}"
        return out

    def json(self, *args: str) -> dict[str, object]:
        out = self.run(*args)
        return json.loads(out.stdout) if out.stdout.strip() else {}

    def denied(self, *args: str) -> str:
        out = self.run(*args, expect_ok=False)
        assert out.returncode != 0, f"aws {' '.join(args)} was allowed"
        assert "AccessDenied" in out.stderr, out.stderr
        return out.stderr


def test_operator_workflow_and_policies_with_the_aws_cli(tmp_path: pathlib.Path) -> None:
    policy_1, policy_2 = copy.deepcopy(POLICY_1), copy.deepcopy(POLICY_2)
    server = Server(tmp_path / "server", extra_args=("--account-id", ACCOUNT), region=REGION).start()
    agent = Agent(server, tmp_path / "agent")
    try:
        target = agent.register()
        agent.start()
        admin = Cli(server, server.aws_env())

        # IAM, as the operator's how-to does it: policy → group → attach → user in group → key.
        (tmp_path / "policy1.json").write_text(json.dumps(policy_1, indent=2))
        policy_arn = admin.json(
            "iam",
            "create-policy",
            "--policy-name",
            "SessionManagerUsers",
            "--policy-document",
            f"file://{tmp_path / 'policy1.json'}",
        )["Policy"]["Arn"]  # type: ignore[index]
        assert policy_arn == f"arn:aws:iam::{ACCOUNT}:policy/SessionManagerUsers"
        admin.run("iam", "create-group", "--group-name", "operators")
        admin.run("iam", "attach-group-policy", "--group-name", "operators", "--policy-arn", str(policy_arn))
        admin.run("iam", "create-user", "--user-name", "alice")
        admin.run("iam", "add-user-to-group", "--group-name", "operators", "--user-name", "alice")
        key = admin.json("iam", "create-access-key", "--user-name", "alice")["AccessKey"]
        assert isinstance(key, dict)

        # `aws configure --profile alice`, non-interactively, into the operator's own files.
        env = {k: v for k, v in server.aws_env().items() if k != "AWS_PROFILE"}
        env.update(
            AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "alice-credentials"),
            AWS_CONFIG_FILE=str(tmp_path / "alice-config"),
        )
        for name, value in (
            ("aws_access_key_id", key["AccessKeyId"]),
            ("aws_secret_access_key", key["SecretAccessKey"]),
            ("region", REGION),
        ):
            subprocess.run([AWS, "configure", "set", name, value, "--profile", "alice"], env=env, check=True)
        env["AWS_PROFILE"] = "alice"
        alice = Cli(server, env)
        assert alice.json("sts", "get-caller-identity")["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/alice"

        # Policy 1 names EC2 instances only; a managed node (mi-) has a managed-instance ARN, so,
        # as in AWS, the verbatim policy does not reach it ...
        refused = alice.denied(
            "ssm", "start-session", "--target", target, "--document-name", "SSM-SessionManagerRunShell"
        )
        assert f"arn:aws:ssm:{REGION}:{ACCOUNT}:managed-instance/{target}" in refused
        # ... until the operator adds managed nodes to it.
        policy_1["Statement"][0]["Resource"].append(  # type: ignore[index]
            "arn:aws:ssm:ap-northeast-1:123456789012:managed-instance/*"
        )
        (tmp_path / "policy1.json").write_text(json.dumps(policy_1, indent=2))
        admin.run(
            "iam",
            "create-policy-version",
            "--policy-arn",
            str(policy_arn),
            "--policy-document",
            f"file://{tmp_path / 'policy1.json'}",
            "--set-as-default",
        )

        # A listed document works (the real CLI execs OpenSSM's session-manager-plugin).
        shell = pexpect.spawn(
            AWS,
            [
                "ssm",
                "start-session",
                "--target",
                target,
                "--document-name",
                "SSM-SessionManagerRunShell",
                "--endpoint-url",
                server.endpoint,
            ],
            env=env,
            timeout=30,
            encoding="utf-8",
            dimensions=(24, 80),
        )
        shell.expect(r"Starting session with SessionId: (alice-[0-9a-f]{17})")
        own_session = shell.match.group(1)
        shell.sendline("echo $((6*7))")
        shell.expect("42")

        # ... no document name (SessionDocumentAccessCheck "ture" never matches), or an unlisted one: refused.
        alice.denied("ssm", "start-session", "--target", target)
        alice.denied(
            "ssm",
            "start-session",
            "--target",
            target,
            "--document-name",
            "AWS-StartInteractiveCommand",
            "--parameters",
            "command=id",
        )
        # ... another user's session cannot be terminated; the user's own can.
        other = server.client("ssm").start_session(Target=target)["SessionId"]
        assert other.startswith("admin-")
        assert f"session/{other}" in alice.denied("ssm", "terminate-session", "--session-id", other)
        alice.run("ssm", "terminate-session", "--session-id", own_session)
        shell.expect(pexpect.EOF)
        listed = alice.json("ssm", "describe-sessions", "--state", "History")["Sessions"]
        assert own_session in [s["SessionId"] for s in listed]  # type: ignore[attr-defined]

        # Policy 2: deny everything from outside the listed addresses (we call from 127.0.0.1) ...
        (tmp_path / "policy2.json").write_text(json.dumps(policy_2))
        deny_arn = admin.json(
            "iam",
            "create-policy",
            "--policy-name",
            "OnlyFromOffice",
            "--policy-document",
            f"file://{tmp_path / 'policy2.json'}",
        )["Policy"]["Arn"]  # type: ignore[index]
        admin.run("iam", "attach-group-policy", "--group-name", "operators", "--policy-arn", str(deny_arn))
        stderr = alice.denied("ssm", "describe-instance-information")
        assert "explicit deny" in stderr
        # ... and narrowed to let this address in.
        policy_2["Statement"][0]["Condition"]["NotIpAddress"]["aws:SourceIp"].append("127.0.0.1/32")  # type: ignore[index]
        (tmp_path / "policy2.json").write_text(json.dumps(policy_2))
        admin.run(
            "iam",
            "create-policy-version",
            "--policy-arn",
            str(deny_arn),
            "--policy-document",
            f"file://{tmp_path / 'policy2.json'}",
            "--set-as-default",
        )
        nodes = alice.json("ssm", "describe-instance-information")["InstanceInformationList"]
        assert [n["InstanceId"] for n in nodes] == [target]  # type: ignore[attr-defined]
    finally:
        agent.stop()
        server.stop()
