"""Just-in-time access end to end, with real processes: an `openssm server` with an access webhook, an
`openssm agent`, `openssm access` for requesters and approvers, the real `aws` CLI for the session and
for what IAM and CloudTrail show, and a real HTTP receiver for the webhook.

The receiver is down when the first request is made and the server restarts before it comes up: the
delivery waits in the database and arrives, signed, once both are back. A grant of a few seconds then
ends on its own, ending the requester's `aws ssm start-session` shell."""

from __future__ import annotations

import http.server
import json
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pexpect
import pytest

from openssm.api.access.webhook import SIGNATURE_HEADER, verify
from tests.e2e.harness import Agent, Server, free_port, key_env, openssm_argv, wait_until
from tests.support.access_policies import APPROVER, REQUESTER

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
]  # a server restart, a grant's real time, the aws CLI

AWS = str(pathlib.Path(sys.executable).parent / "aws")
SECRET = b"e2e-webhook-secret-0123456789abcdef"
GRANT_SECONDS = 20


class Receiver:
    """The webhook's receiver: an HTTP server (started when the test says) that checks signatures."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/openssm"
        self.events: list[dict[str, Any]] = []
        self.bad: list[str] = []
        self._server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if verify(SECRET, body, self.headers.get(SIGNATURE_HEADER, ""), now=int(time.time())):
                    receiver.events.append(json.loads(body))
                    self.send_response(204)
                else:
                    receiver.bad.append(self.headers.get(SIGNATURE_HEADER, ""))
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def event(self, name: str, request_id: str) -> dict[str, Any]:
        wait_until(lambda: self.find(name, request_id) is not None, f"webhook event {name} of {request_id}")
        found = self.find(name, request_id)
        assert found is not None
        return found

    def find(self, name: str, request_id: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e["event"] == name and e["requestId"] == request_id), None)


class User:
    """A user's environment for `openssm access`, `openssm start-session` and `aws`."""

    def __init__(self, server: Server, key: dict[str, str], tmp_path: pathlib.Path) -> None:
        self.server = server
        self.env = key_env(server, key, tmp_path)

    def access(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = openssm_argv("access", *args, "--endpoint-url", self.server.endpoint)
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60, check=False)

    def aws(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [AWS, "--endpoint-url", self.server.endpoint, "--output", "json", *args]
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60, check=False)

    def request(self, target: str, duration: str) -> str:
        out = self.access(
            "request", "--target", target, "--duration", duration, "--reason", "e2e maintenance"
        )
        assert out.returncode == 0, out.stderr
        return str(json.loads(out.stdout)["AccessRequest"]["AccessRequestId"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    try:
        yield running
    finally:
        running.stop()


def test_request_approve_session_expiry_and_the_webhook(tmp_path: pathlib.Path, receiver: Receiver) -> None:
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_bytes(SECRET + b"\n")
    secret_file.chmod(0o600)
    hook = ("--access-webhook", receiver.url, "--access-webhook-secret-file", str(secret_file))
    server = Server(tmp_path / "server", extra_args=hook).start()
    agent = Agent(server, tmp_path / "agent")
    try:
        target = agent.register()
        agent.start()
        key, secret = server.admin_credentials
        admin = User(server, {"AccessKeyId": key, "SecretAccessKey": secret}, tmp_path)
        iam = server.client("iam")
        users = {}
        for name, policy in (("alice", REQUESTER), ("bob", APPROVER), ("carol", None)):
            iam.create_user(UserName=name)
            if policy is not None:
                iam.put_user_policy(UserName=name, PolicyName="access", PolicyDocument=json.dumps(policy))
            users[name] = User(server, iam.create_access_key(UserName=name)["AccessKey"], tmp_path)
        alice, bob, carol = users["alice"], users["bob"], users["carol"]

        # The receiver is down: the first delivery fails, and the server restarts before it is back.
        first = alice.request(target, f"{GRANT_SECONDS}s")
        process = server.process
        assert process is not None
        wait_until(lambda: "access webhook: delivery" in process.log(), "a failed delivery")
        server.stop()
        receiver.start()
        server.start()
        agent.wait_online(timeout=60)
        requested = receiver.event("requested", first)
        assert requested["requester"] == "alice" and requested["target"] == target
        assert requested["durationSeconds"] == GRANT_SECONDS and requested["reason"] == "e2e maintenance"
        assert requested["decision"] is None and requested["decider"] is None

        # Nobody approves their own request; carol may not approve at all.
        for who in (alice, carol):
            refused = who.access("approve", first)
            assert refused.returncode == 255 and "(AccessDeniedException)" in refused.stderr, refused.stderr
            assert "when calling the ApproveAccessRequest operation" in refused.stderr
        approved = bob.access("approve", first, "--reason", "ok for 20 s")
        assert approved.returncode == 0, approved.stderr
        decision = receiver.event("approved", first)
        assert (decision["decision"], decision["decider"], decision["decisionReason"]) == (
            "Approved",
            "bob",
            "ok for 20 s",
        )

        # IAM shows the grant as alice's inline policy, and the simulator evaluates it.
        policy_name = f"openssm-access-{first}"
        listed = json.loads(admin.aws("iam", "list-user-policies", "--user-name", "alice").stdout)
        assert policy_name in listed["PolicyNames"]
        shown = json.loads(
            admin.aws("iam", "get-user-policy", "--user-name", "alice", "--policy-name", policy_name).stdout
        )
        assert shown["PolicyDocument"]["Statement"][0]["Condition"]["DateLessThan"]["aws:CurrentTime"]
        simulated = admin.aws(
            "iam", "simulate-principal-policy",
            "--policy-source-arn", json.loads(alice.aws("sts", "get-caller-identity").stdout)["Arn"],
            "--action-names", "ssm:StartSession",
            "--resource-arns", f"arn:aws:ssm:{server.region}:000000000000:managed-instance/{target}",
            "--context-entries",
            "ContextKeyName=openssm:DocumentName,ContextKeyValues=SSM-SessionManagerRunShell,ContextKeyType=string",
            "ContextKeyName=aws:CurrentTime,ContextKeyValues=2020-01-01T00:00:00Z,ContextKeyType=date",
        )  # fmt: skip
        assert json.loads(simulated.stdout)["EvaluationResults"][0]["EvalDecision"] == "allowed", (
            simulated.stderr
        )

        # alice's aws ssm start-session works on that node, with that document only.
        shell = pexpect.spawn(
            AWS, ["ssm", "start-session", "--target", target, "--endpoint-url", server.endpoint],
            env=alice.env, timeout=30, encoding="utf-8", dimensions=(24, 100),
        )  # fmt: skip
        try:
            shell.expect(r"Starting session with SessionId: (alice-[0-9a-f]{17})")
            shell.sendline("echo jit-$((40+2))")
            shell.expect("jit-42")
            other = alice.aws("ssm", "start-session", "--target", target, "--document-name", "AWS-StartSSHSession",
                              "--parameters", "portNumber=22")  # fmt: skip
            assert other.returncode != 0 and "AccessDeniedException" in other.stderr
            # ... until the grant's time is up: the server ends the shell by itself.
            shell.expect(f"Access request {first} expired", timeout=GRANT_SECONDS + 30)
            shell.expect(pexpect.EOF, timeout=20)
        finally:
            shell.close(force=True)
        receiver.event("expired", first)
        again = alice.aws("ssm", "start-session", "--target", target)
        assert again.returncode != 0 and "AccessDeniedException" in again.stderr
        listed = json.loads(admin.aws("iam", "list-user-policies", "--user-name", "alice").stdout)
        assert policy_name not in listed["PolicyNames"]

        # Deny, and revoke of a running grant, each reach the webhook too.
        denied_id = alice.request(target, "1h")
        assert bob.access("deny", denied_id, "--reason", "not now").returncode == 0
        assert receiver.event("denied", denied_id)["decisionReason"] == "not now"
        revoked_id = alice.request(target, "1h")
        assert bob.access("approve", revoked_id).returncode == 0
        assert bob.access("revoke", revoked_id).returncode == 0
        assert receiver.event("revoked", revoked_id)["decider"] == "bob"
        mine = alice.access("list", "--mine", "--output", "text")
        assert mine.returncode == 0, mine.stderr
        assert [line.split("\t")[:2] for line in mine.stdout.splitlines()] == [
            [revoked_id, "Revoked"], [denied_id, "Denied"], [first, "Expired"],
        ]  # fmt: skip
        assert receiver.bad == []

        # CloudTrail, through the AWS CLI: every step of the first request, in order.
        # (the CLI pages through all of them: the agent's own calls are there too)
        trail = json.loads(admin.aws("cloudtrail", "lookup-events", "--start-time", started).stdout)["Events"]
        steps = []
        for event in reversed(trail):
            detail = json.loads(event["CloudTrailEvent"])
            about = detail.get("requestParameters") or detail.get("serviceEventDetails") or {}
            if about.get("accessRequestId") == first:
                steps.append((event["EventName"], event.get("Username"), detail.get("errorCode")))
        assert steps == [
            ("RequestAccess", "alice", None),
            ("ApproveAccessRequest", "alice", "AccessDenied"),
            ("ApproveAccessRequest", "carol", "AccessDenied"),
            ("ApproveAccessRequest", "bob", None),
            ("PutUserPolicy", "openssm.amazonaws.com", None),
            ("ExpireAccessRequest", "openssm.amazonaws.com", None),
            ("DeleteUserPolicy", "openssm.amazonaws.com", None),
            ("TerminateSession", "openssm.amazonaws.com", None),
        ]
    finally:
        agent.stop()
        server.stop()
