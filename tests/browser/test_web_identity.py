"""Single sign-on the AWS way, against a real OpenID provider (npm ``oidc-provider``) driven through
its sign-in pages by Chromium: ``aws iam create-open-id-connect-provider`` and a role trusting it,
``aws sts assume-role-with-web-identity`` with the real AWS CLI (and its refusals, with AWS's error
codes), ``openssm login --oidc``, and the console's "Sign in with <provider>".

Screenshots (artifacts/screenshots): ``30-…`` the console sign-in, ``31-…`` ``openssm login``.
"""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import screenshot
from tests.e2e.harness import Agent, Server, free_port
from tests.support.oidc import (
    PASSWORD,
    OidcProvider,
    aws_env,
    id_token_via_browser,
    loopback_only,
    native_client,
    running_provider,
    sign_in_at_provider,
    web_client,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ACCOUNT = "000000000000"
AWS = str(pathlib.Path(sys.executable).parent / "aws")
OPENSSM = [sys.executable, "-m", "openssm"]
CLI_CLIENT, OTHER_CLIENT, CONSOLE_CLIENT = "openssm-cli", "other-app", "openssm-console"
CONSOLE_SECRET = "console-client-secret-for-tests"
ROLE = "OidcOperators"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
OPERATOR_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ssm:DescribeInstanceInformation",
                "ssm:DescribeSessions",
                "ssm:GetConnectionStatus",
                "ssm:StartSession",
                "ssmmessages:OpenDataChannel",
            ],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Action": ["ssm:TerminateSession", "ssm:ResumeSession"],
            "Resource": "arn:aws:ssm:*:*:session/${aws:userid}-*",
        },
    ],
}


def trust_policy(provider: OidcProvider, audience: str, subjects: list[str]) -> dict[str, Any]:
    """AWS's documented trust policy for OIDC federation, with the provider's ``:aud``/``:sub`` keys."""
    key = provider.host_port
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{key}"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {f"{key}:aud": audience},
                    "StringLike": {f"{key}:sub": subjects},
                },
            }
        ],
    }


class Aws:
    def __init__(self, server: Server, env: dict[str, str]) -> None:
        self.server, self.env = server, env

    def run(
        self, *args: str, ok: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [AWS, "--endpoint-url", self.server.endpoint, "--output", "json", *args],
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (out.returncode == 0) == ok, f"aws {' '.join(args)}: {out.stdout}{out.stderr}"
        return out

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        out = self.run(*args, env=env).stdout
        return json.loads(out) if out.strip() else {}


def set_up_federation(admin: Aws, provider: OidcProvider, tmp_path: pathlib.Path, audience: str) -> str:
    """The operator's steps: the IAM OIDC provider, then a role that trusts it, with a policy."""
    created = admin.json(
        "iam", "create-open-id-connect-provider", "--url", provider.issuer, "--client-id-list", audience
    )
    provider_arn = created["OpenIDConnectProviderArn"]
    assert provider_arn == f"arn:aws:iam::{ACCOUNT}:oidc-provider/{provider.host_port}"
    (tmp_path / "trust.json").write_text(json.dumps(trust_policy(provider, audience, ["alice", "bob"])))
    (tmp_path / "policy.json").write_text(json.dumps(OPERATOR_POLICY))
    admin.run(
        "iam",
        "create-role",
        "--role-name",
        ROLE,
        "--assume-role-policy-document",
        f"file://{tmp_path / 'trust.json'}",
    )
    admin.run(
        "iam", "put-role-policy", "--role-name", ROLE, "--policy-name", "operators",
        "--policy-document", f"file://{tmp_path / 'policy.json'}",
    )  # fmt: skip
    return str(provider_arn)


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with running_provider(
        [native_client(CLI_CLIENT, "ES256"), native_client(OTHER_CLIENT, "RS256")]
    ) as started:
        yield started


def test_aws_cli_manages_oidc_providers_and_assumes_a_role_with_a_web_identity(
    browser: Any, provider: OidcProvider, tmp_path: pathlib.Path
) -> None:
    server = Server(tmp_path / "server").start()
    try:
        admin = Aws(server, server.aws_env())
        provider_arn = set_up_federation(admin, provider, tmp_path, CLI_CLIENT)

        # The provider as IAM shows it; client ids and thumbprints as the AWS CLI edits them.
        assert admin.json("iam", "list-open-id-connect-providers")["OpenIDConnectProviderList"] == [
            {"Arn": provider_arn}
        ]
        thumbprint = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"
        admin.run(
            "iam",
            "add-client-id-to-open-id-connect-provider",
            "--open-id-connect-provider-arn",
            provider_arn,
            "--client-id",
            "spare",
        )
        admin.run(
            "iam",
            "update-open-id-connect-provider-thumbprint",
            "--open-id-connect-provider-arn",
            provider_arn,
            "--thumbprint-list",
            thumbprint,
        )
        shown = admin.json(
            "iam", "get-open-id-connect-provider", "--open-id-connect-provider-arn", provider_arn
        )
        assert shown["Url"] == provider.host_port
        assert shown["ClientIDList"] == [CLI_CLIENT, "spare"] and shown["ThumbprintList"] == [thumbprint]
        admin.run(
            "iam",
            "remove-client-id-from-open-id-connect-provider",
            "--open-id-connect-provider-arn",
            provider_arn,
            "--client-id",
            "spare",
        )
        duplicate = admin.run(
            "iam",
            "create-open-id-connect-provider",
            "--url",
            provider.issuer,
            "--client-id-list",
            "x",
            ok=False,
        )
        assert "EntityAlreadyExists" in duplicate.stderr

        token = id_token_via_browser(browser, provider, CLI_CLIENT, "alice")
        anonymous = aws_env(tmp_path)  # assume-role-with-web-identity needs no AWS credentials
        assumed = admin.json(
            "sts", "assume-role-with-web-identity", "--role-arn", ROLE_ARN, "--role-session-name", "alice",
            "--web-identity-token", token, "--duration-seconds", "900", env=anonymous,
        )  # fmt: skip
        credentials = assumed["Credentials"]
        assert credentials["AccessKeyId"].startswith("ASIA") and credentials["SessionToken"]
        assert assumed["SubjectFromWebIdentityToken"] == "alice"
        assert assumed["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/alice"
        assert assumed["Audience"] == CLI_CLIENT and assumed["Provider"] == provider.issuer
        session = aws_env(
            tmp_path,
            AWS_ACCESS_KEY_ID=credentials["AccessKeyId"],
            AWS_SECRET_ACCESS_KEY=credentials["SecretAccessKey"],
            AWS_SESSION_TOKEN=credentials["SessionToken"],
        )
        who = admin.json("sts", "get-caller-identity", env=session)
        assert who["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/alice"
        assert who["UserId"].startswith("AROA") and who["UserId"].endswith(":alice")
        admin.json("ssm", "describe-instance-information", env=session)  # the role's policy allows it
        denied = admin.run("ssm", "create-activation", "--iam-role", "OpenSSMNodeRole", ok=False, env=session)
        assert "AccessDeniedException" in denied.stderr  # ... and nothing more

        def refused(web_token: str, code: str, session_name: str = "alice") -> str:
            out = admin.run(
                "sts", "assume-role-with-web-identity", "--role-arn", ROLE_ARN, "--role-session-name", session_name,
                "--web-identity-token", web_token, ok=False, env=anonymous,
            )  # fmt: skip
            assert f"({code})" in out.stderr, out.stderr
            return out.stderr

        # A token for another application: not one of the provider's client ids.
        other = id_token_via_browser(browser, provider, OTHER_CLIENT, "alice")
        assert "Incorrect token audience" in refused(other, "InvalidIdentityToken")
        # A signature that does not verify with the issuer's keys.
        head, payload, signature = token.split(".")
        forged = ".".join([head, payload, ("A" if signature[0] != "A" else "B") + signature[1:]])
        refused(forged, "InvalidIdentityToken")
        # A user the trust policy does not name.
        carol_role = "NobodysRole"
        (tmp_path / "trust-carol.json").write_text(json.dumps(trust_policy(provider, CLI_CLIENT, ["carol"])))
        admin.run(
            "iam",
            "create-role",
            "--role-name",
            carol_role,
            "--assume-role-policy-document",
            f"file://{tmp_path / 'trust-carol.json'}",
        )
        out = admin.run(
            "sts", "assume-role-with-web-identity", "--role-arn", f"arn:aws:iam::{ACCOUNT}:role/{carol_role}",
            "--role-session-name", "alice", "--web-identity-token", token, ok=False, env=anonymous,
        )  # fmt: skip
        assert (
            "(AccessDenied)" in out.stderr
            and "Not authorized to perform sts:AssumeRoleWithWebIdentity" in out.stderr
        )
        # An issuer with no IAM OIDC provider.
        admin.run("iam", "delete-open-id-connect-provider", "--open-id-connect-provider-arn", provider_arn)
        assert f"No OpenIDConnect provider found in your account for {provider.issuer}" in refused(
            token, "InvalidIdentityToken"
        )
        # Each trust decision (alice admitted, then refused by NobodysRole) is in the audit trail.
        events = admin.json(
            "cloudtrail",
            "lookup-events",
            "--lookup-attributes",
            "AttributeKey=EventName,AttributeValue=AssumeRoleWithWebIdentity",
        )
        assert len(events["Events"]) == 2
    finally:
        server.stop()


def test_openssm_login_writes_a_profile_the_aws_cli_uses(
    browser: Any, provider: OidcProvider, tmp_path: pathlib.Path
) -> None:
    server = Server(tmp_path / "server").start()
    try:
        admin = Aws(server, server.aws_env())
        set_up_federation(admin, provider, tmp_path, CLI_CLIENT)
        home = tmp_path / "home"
        home.mkdir()
        env = aws_env(home)
        login = subprocess.Popen(
            [
                *OPENSSM, "login", "--oidc", "ops", "--issuer", provider.issuer, "--client-id", CLI_CLIENT,
                "--role-arn", ROLE_ARN, "--endpoint-url", server.endpoint, "--region", "us-east-1",
                "--no-browser", "--timeout", "60",
            ],
            env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert login.stderr is not None
            url = ""
            while not url.startswith("http"):
                line = login.stderr.readline()
                assert line, f"openssm login printed no URL (exit {login.poll()})"
                url = line.strip()
            assert "code_challenge_method=S256" in url and "nonce=" in url and "state=" in url
            context = browser.new_context()
            page = context.new_page()
            loopback_only(page)
            page.goto(url)
            sign_in_at_provider(page, "bob", shots="31-login")
            page.wait_for_selector("text=Signed in")
            screenshot(page, "31-login-done")
            context.close()
            _, errors = login.communicate(timeout=60)
        finally:
            if login.poll() is None:
                login.kill()
                login.wait()
        assert login.returncode == 0, errors
        assert f"assumed-role/{ROLE}/bob" in errors
        credentials = (home / "aws-credentials").read_text()
        assert re.search(r"^\[ops\]$", credentials, re.M) and "aws_access_key_id = ASIA" in credentials
        assert "aws_session_token = " in credentials
        assert (home / "aws-credentials").stat().st_mode & 0o777 == 0o600
        # The AWS CLI uses the profile as it is: no --endpoint-url (the config names it), no keys.
        out = subprocess.run(
            [AWS, "--profile", "ops", "--output", "json", "sts", "get-caller-identity"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/bob"
        # The settings stayed in the profile: the next login needs only its name (it waits for the browser).
        again = subprocess.Popen(
            [*OPENSSM, "login", "--oidc", "ops", "--no-browser", "--timeout", "5"],
            env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _, errors = again.communicate(timeout=60)
        assert provider.issuer in errors and "No sign-in came back within 5 seconds" in errors
    finally:
        server.stop()


def test_console_sign_in_with_the_provider_lands_in_the_role_session(
    browser: Any, tmp_path: pathlib.Path
) -> None:
    port = free_port()
    callback = f"http://127.0.0.1:{port}/console/oidc/callback"
    with running_provider([web_client(CONSOLE_CLIENT, CONSOLE_SECRET, callback)]) as idp:
        secret_file = tmp_path / "client-secret"
        secret_file.write_text(CONSOLE_SECRET + "\n")
        secret_file.chmod(0o600)
        server = Server(
            tmp_path / "server",
            port=port,
            extra_args=(
                "--oidc-issuer", idp.issuer, "--oidc-client-id", CONSOLE_CLIENT,
                "--oidc-client-secret-file", str(secret_file), "--oidc-role-arn", ROLE_ARN, "--oidc-name", "Test IdP",
            ),
        ).start()  # fmt: skip
        agent = Agent(server, tmp_path / "agent")
        try:
            instance_id = agent.register()
            agent.start()
            set_up_federation(Aws(server, server.aws_env()), idp, tmp_path, CONSOLE_CLIENT)
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            loopback_only(page)
            page.goto(f"{server.endpoint}/console/")
            button = page.locator("#oidc-signin")
            button.wait_for()
            assert button.inner_text() == "Sign in with Test IdP"
            screenshot(page, "30-console-signin-with-provider")
            button.click()
            # A wrong password stays at the provider.
            page.wait_for_selector("#username")
            page.fill("#username", "alice")
            page.fill("#password", "not " + PASSWORD)
            page.click("#sign-in")
            page.wait_for_selector("text=Wrong username or password.")
            sign_in_at_provider(page, "alice", shots="30-console")
            page.wait_for_url("**/console/nodes")
            page.locator(f'tr[data-instance-id="{instance_id}"]').wait_for()
            assert page.inner_text(".who .user") == "alice"
            screenshot(page, "30-console-signed-in-as-role-session")
            me = page.evaluate("() => fetch('/console/api/me').then((r) => r.json())")
            assert me["arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/alice"
            context.close()

            # A callback without the sign-in's state (a forged or replayed redirect) is refused.
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            loopback_only(page)
            page.goto(f"{server.endpoint}/console/oidc/callback?code=forged&state=forged")
            page.wait_for_url("**/console/signin?error=*")
            assert "sign in again" in page.inner_text("#signin-message")
            context.close()
        finally:
            agent.stop()
            server.stop()


async def _judged_by_the_clock(tmp_path: pathlib.Path, provider: OidcProvider, token: str) -> None:
    import datetime as dt

    import jwt

    from openssm.store.iam import oidc_providers, roles
    from tests.support.inprocess_api import ACCOUNT as API_ACCOUNT
    from tests.support.inprocess_api import running_api

    claims = jwt.decode(token, options={"verify_signature": False})
    issued, expires = (dt.datetime.fromtimestamp(claims[name], dt.UTC) for name in ("iat", "exp"))
    async with running_api(tmp_path) as api:
        engine, now = api.services.engine, api.clock.now()
        await oidc_providers.create(
            engine, API_ACCOUNT, url=provider.host_port, scheme="http", client_ids=[CLI_CLIENT],
            thumbprints=[], tags={}, now=now,
        )  # fmt: skip
        trust = json.dumps(trust_policy(provider, CLI_CLIENT, ["alice"])).replace(ACCOUNT, API_ACCOUNT)
        await roles.create(engine, API_ACCOUNT, ROLE, "/", trust, None, {}, now)
        role_arn = f"arn:aws:iam::{API_ACCOUNT}:role/{ROLE}"
        form = {
            "Action": "AssumeRoleWithWebIdentity",
            "RoleArn": role_arn,
            "RoleSessionName": "alice",
            "WebIdentityToken": token,
        }

        api.clock.set(issued)
        reply = await api.query("sts", {**form, "DurationSeconds": "900"}, None)
        assert reply.status == 200, reply.text
        session = (reply.xml("AccessKeyId"), reply.xml("SecretAccessKey"), reply.xml("SessionToken"))
        assert (await api.query("sts", {"Action": "GetCallerIdentity"}, session)).status == 200
        api.clock.advance(900)  # the role session's credentials end by the same clock
        assert (await api.query("sts", {"Action": "GetCallerIdentity"}, session)).code == "ExpiredToken"
        too_long = await api.query("sts", {**form, "DurationSeconds": "7200"}, None)
        assert too_long.code == "ValidationError" and "MaxSessionDuration" in too_long.text

        api.clock.set(expires + dt.timedelta(seconds=61))  # past exp and the minute of skew allowed
        reply = await api.query("sts", form, None)
        assert (reply.status, reply.code) == (400, "ExpiredTokenException")
        assert "Token expired: current date/time" in reply.text

        api.clock.set(
            issued - dt.timedelta(seconds=61)
        )  # a token from the future: the provider's clock is off
        assert (await api.query("sts", form, None)).code == "IDPRejectedClaim"


def test_token_times_are_judged_by_the_servers_clock(
    browser: Any, provider: OidcProvider, tmp_path: pathlib.Path
) -> None:
    import asyncio
    import concurrent.futures

    token = id_token_via_browser(browser, provider, CLI_CLIENT, "alice")
    # Playwright's sync API holds this thread's event loop: the in-process server runs in another.
    with concurrent.futures.ThreadPoolExecutor(1) as other_thread:
        other_thread.submit(asyncio.run, _judged_by_the_clock(tmp_path, provider, token)).result()
