"""The client's own API calls (``openssm.client.aws_http``) against the real server: SigV4 accepted,
errors worded exactly as boto3 words them, TLS trust, proxies (a real tinyproxy), and the fallback
to boto3 for credential sources only botocore resolves."""

from __future__ import annotations

import json
import os
import pathlib
import stat
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
import pytest
from tests.conftest import require
from tests.integration.api_harness import ApiServer, make_user
from tests.support.proxy import HttpProxy, run_tinyproxy, tinyproxy_available
from tests.support.tls import self_signed

from openssm.client.api import (
    ApiError,
    ApiTarget,
    BotoCaller,
    Caller,
    ServiceError,
    start_session,
)
from openssm.client.aws_http import ConnectionFailed, JsonApiClient

REGION = "us-east-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    running = ApiServer(tmp_path_factory.mktemp("api")).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> pytest.MonkeyPatch:
    """Nothing of the machine's AWS or proxy settings; HOME in the test's directory."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    return monkeypatch


def keys_in_env(env: pytest.MonkeyPatch, credentials: tuple[str, str]) -> None:
    env.setenv("AWS_ACCESS_KEY_ID", credentials[0])
    env.setenv("AWS_SECRET_ACCESS_KEY", credentials[1])


def both(endpoint: str) -> tuple[Caller, Caller]:
    """Our caller and boto3's, for the same configuration."""
    target = ApiTarget(region=REGION, endpoint_url=endpoint)
    ours = target.caller()
    assert isinstance(ours, JsonApiClient)
    return ours, BotoCaller(target, "ssm")


def failure(caller: Caller, operation: str, params: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as info:
        caller.call(operation, params)
    return info.value


def test_signed_calls_are_accepted(server: ApiServer, aws_env: pytest.MonkeyPatch) -> None:
    keys_in_env(aws_env, server.admin_credentials)
    ours, boto = both(server.endpoint)
    assert ours.call("DescribeSessions", {"State": "Active"})["Sessions"] == []
    assert ours.call("DescribeSessions", {"State": "Active"}) == {
        key: value
        for key, value in boto.call("DescribeSessions", {"State": "Active"}).items()
        if key != "ResponseMetadata"
    }


def test_service_errors_read_as_boto3_words_them(server: ApiServer, aws_env: pytest.MonkeyPatch) -> None:
    keys_in_env(aws_env, server.admin_credentials)
    ours, boto = both(server.endpoint)
    for operation, params in [
        ("StartSession", {"Target": "mi-00000000000000000"}),
        ("StartSession", {"Target": "mi-00000000000000000", "DocumentName": "No-Such-Document"}),
        ("TerminateSession", {"SessionId": "nobody-00000000000000000"}),
        ("ResumeSession", {"SessionId": "nobody-00000000000000000"}),
    ]:
        mine = failure(ours, operation, params)
        theirs = failure(boto, operation, params)
        assert isinstance(mine, ServiceError)
        assert (str(mine), mine.code) == (str(theirs), theirs.code)


def test_denied_and_badly_signed_calls(server: ApiServer, aws_env: pytest.MonkeyPatch) -> None:
    keys_in_env(aws_env, make_user(server, "nobody-allowed", None))
    ours, boto = both(server.endpoint)
    params = {"Target": "mi-00000000000000000"}
    denied = failure(ours, "StartSession", params)
    assert denied.code == "AccessDeniedException"
    assert str(denied) == str(failure(boto, "StartSession", params))
    keys_in_env(aws_env, (server.admin_credentials[0], "not-the-secret"))
    ours, boto = both(server.endpoint)
    forged = failure(ours, "DescribeSessions", {"State": "Active"})
    assert forged.code == "InvalidSignatureException"
    assert str(forged) == str(failure(boto, "DescribeSessions", {"State": "Active"}))


def test_parameter_checks_and_unreachable_endpoints_read_as_boto3s(
    server: ApiServer, aws_env: pytest.MonkeyPatch
) -> None:
    keys_in_env(aws_env, server.admin_credentials)
    ours, boto = both(server.endpoint)
    request = {"Target": "", "Parameters": {"portNumber": [""]}, "Reason": ""}
    with pytest.raises(ApiError) as info:
        start_session(ours, request)
    with pytest.raises(botocore.exceptions.ParamValidationError) as boto_info:
        boto3.client("ssm", endpoint_url=server.endpoint).start_session(**request)
    assert str(info.value) == str(boto_info.value)
    assert str(info.value).count("Invalid length") == 3
    ours, boto = both("http://127.0.0.1:9")  # nothing listens on the discard port
    refused = failure(ours, "DescribeSessions", {"State": "Active"})
    assert isinstance(refused, ConnectionFailed)
    assert (
        str(refused)
        == str(failure(boto, "DescribeSessions", {"State": "Active"}))
        == ('Could not connect to the endpoint URL: "http://127.0.0.1:9/"')
    )


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, pathlib.Path]]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(directory)
    running = ApiServer(directory / "data", tls_cert=cert, tls_key=key)
    running.endpoint = running.endpoint.replace("http://", "https://")
    running.start()
    try:
        yield running, cert
    finally:
        running.stop()


def test_tls_trusts_what_botocore_trusts(
    tls_server: tuple[ApiServer, pathlib.Path], aws_env: pytest.MonkeyPatch
) -> None:
    server, cert = tls_server
    keys_in_env(aws_env, server.admin_credentials)
    ours, _ = both(server.endpoint)
    untrusted = failure(ours, "DescribeSessions", {"State": "Active"})  # certifi's roots do not know it
    assert isinstance(untrusted, ConnectionFailed)
    assert str(untrusted).startswith(f"SSL validation failed for {server.endpoint}/ ")
    aws_env.setenv("AWS_CA_BUNDLE", str(cert))
    ours, _ = both(server.endpoint)
    assert ours.call("DescribeSessions", {"State": "Active"})["Sessions"] == []
    aws_env.delenv("AWS_CA_BUNDLE")
    config = pathlib.Path(os.environ["HOME"]) / ".aws" / "config"
    config.parent.mkdir()
    config.write_text(f"[default]\nca_bundle = {cert}\n")
    ours, _ = both(server.endpoint)
    assert ours.call("DescribeSessions", {"State": "Active"})["Sessions"] == []


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpProxy]:
    require(tinyproxy_available(), "tinyproxy is not installed (scripts/install-system-deps installs it)")
    with run_tinyproxy(tmp_path_factory.mktemp("proxy"), credentials=("bob", "pa55")) as running:
        yield running


def test_calls_go_through_the_proxy_botocore_would_use(
    server: ApiServer,
    tls_server: tuple[ApiServer, pathlib.Path],
    proxy: HttpProxy,
    aws_env: pytest.MonkeyPatch,
) -> None:
    keys_in_env(aws_env, server.admin_credentials)
    aws_env.setenv("HTTP_PROXY", proxy.url)
    ours, _ = both(server.endpoint)
    assert ours.call("DescribeSessions", {"State": "Active"})["Sessions"] == []
    assert proxy.requests()[-1] == f"POST {server.endpoint}/"  # forwarded by the proxy
    secure, cert = tls_server
    keys_in_env(aws_env, secure.admin_credentials)
    aws_env.setenv("https_proxy", proxy.url)
    aws_env.setenv("AWS_CA_BUNDLE", str(cert))
    ours, _ = both(secure.endpoint)
    assert ours.call("DescribeSessions", {"State": "Active"})["Sessions"] == []
    assert proxy.requests()[-1] == f"CONNECT {secure.endpoint.removeprefix('https://')}"  # a tunnel
    seen = len(proxy.requests())
    aws_env.setenv("NO_PROXY", "127.0.0.1")
    ours, _ = both(secure.endpoint)
    assert ours.call("DescribeSessions", {"State": "Active"})["Sessions"] == []
    assert len(proxy.requests()) == seen  # bypassed
    aws_env.delenv("NO_PROXY")
    aws_env.setenv("https_proxy", proxy.url.replace("pa55", "wrong"))
    ours, _ = both(secure.endpoint)
    assert isinstance(failure(ours, "DescribeSessions", {"State": "Active"}), ConnectionFailed)


def test_sources_only_botocore_resolves_go_through_boto3(
    server: ApiServer, aws_env: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    key, secret = server.admin_credentials
    process = tmp_path / "credentials.py"
    process.write_text(
        "import json\n"
        f"print(json.dumps({{'Version': 1, 'AccessKeyId': {key!r}, 'SecretAccessKey': {secret!r}}}))\n"
    )
    process.chmod(process.stat().st_mode | stat.S_IXUSR)
    config = tmp_path / ".aws" / "config"
    config.parent.mkdir()
    config.write_text(
        f"[profile helper]\nregion = {REGION}\ncredential_process = {sys.executable} {process}\n\n"
        "[profile sso]\nregion = us-east-1\nsso_account_id = 123456789012\nsso_role_name = r\n"
        "sso_start_url = https://example.awsapps.com/start\nsso_region = us-east-1\n\n"
        "[profile role]\nregion = us-east-1\nrole_arn = arn:aws:iam::123456789012:role/r\n"
        "source_profile = helper\n"
    )
    for profile in ("helper", "sso", "role"):
        assert isinstance(ApiTarget(profile=profile, endpoint_url=server.endpoint).caller(), BotoCaller)
    caller = ApiTarget(profile="helper", endpoint_url=server.endpoint).caller()
    assert caller.call("DescribeSessions", {"State": "Active"})["Sessions"] == []
    assert "botocore" in sys.modules


def test_a_session_token_is_sent_and_a_wrong_one_refused(
    server: ApiServer, aws_env: pytest.MonkeyPatch
) -> None:
    keys_in_env(aws_env, server.admin_credentials)
    aws_env.setenv("AWS_SESSION_TOKEN", "not-a-token-the-server-issued")
    ours, boto = both(server.endpoint)
    mine = failure(ours, "DescribeSessions", {"State": "Active"})
    assert str(mine) == str(failure(boto, "DescribeSessions", {"State": "Active"}))
    assert json.dumps(mine.code)  # an AWS error code, whatever the server calls it
