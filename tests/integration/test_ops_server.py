"""What an operator sees of a running server: /healthz and /readyz, request ids, the refusal log
lines (API, MGS REST, channel WebSockets) and the API's Prometheus metrics, on a real server
(``ApiServer``: the whole node on a loopback port, in a thread of the test process)."""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from tests.integration.api_harness import ACCOUNT, REGION, ApiServer, HttpResult, make_user
from tests.support import postgres
from tests.support.net import free_port

from openssm.auth.sigv4 import sign_hmac

UNKNOWN_INSTANCE = "mi-0000000000000dead"


def get(url: str) -> HttpResult:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return HttpResult(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return HttpResult(error.code, dict(error.headers), error.read())


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in the text exposition format (0 when absent)."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == wanted:
            return float(value)
    return 0.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    metrics_port = free_port()
    running = ApiServer(
        tmp_path_factory.mktemp("ops") / "data", metrics_listen=("127.0.0.1", metrics_port)
    ).start()
    try:
        yield running
    finally:
        running.stop()


def scrape(server: ApiServer) -> str:
    assert server.config.metrics_listen is not None
    host, port = server.config.metrics_listen
    result = get(f"http://{host}:{port}/metrics")
    assert result.status == 200
    assert result.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return result.body.decode()


def refusals(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [dict(r.__dict__["openssm"]) for r in caplog.records if r.name == "openssm.refused"]


def test_health_and_readiness_need_no_authentication_and_say_nothing_more(server: ApiServer) -> None:
    for path in ("/healthz", "/readyz"):
        result = get(server.endpoint + path)
        assert (result.status, result.body) == (200, b"ok\n")
        assert result.headers["x-amzn-RequestId"]  # every response has its request id


def test_readyz_fails_when_the_schema_is_not_current_and_says_why_only_in_the_log(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = ApiServer(tmp_path / "data").start()
    try:
        assert get(server.endpoint + "/readyz").status == 200

        async def roll_back(engine: Any) -> None:
            async with engine.begin() as conn:
                await conn.execute(sa.text("UPDATE alembic_version SET version_num = 'older'"))

        server.db(roll_back)
        with caplog.at_level(logging.WARNING, logger="openssm.server.health"):
            result = get(server.endpoint + "/readyz")
        assert (result.status, result.body) == (503, b"not ready\n")
        assert "schema is not at the newest migration" in caplog.text
        assert get(server.endpoint + "/healthz").status == 200  # still serving
    finally:
        server.stop()


@pytest.mark.postgres
def test_readyz_fails_when_the_database_is_gone(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    postgres.require_postgres()
    name, url = postgres.create_database()
    server = ApiServer(tmp_path / "data", database_url=url).start()
    try:
        assert get(server.endpoint + "/readyz").status == 200
        postgres.drop_database(name)  # with FORCE: the server's connections are cut
        with caplog.at_level(logging.WARNING, logger="openssm.server.health"):
            result = get(server.endpoint + "/readyz")
        assert (result.status, result.body) == (503, b"not ready\n")
        assert "database does not answer" in caplog.text
        assert name not in result.body.decode()
        assert get(server.endpoint + "/healthz").status == 200
    finally:
        server.stop()
        postgres.drop_database(name)


def test_api_refusals_are_logged_once_with_principal_action_resource_and_reason(
    server: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"nobody-{uuid.uuid4().hex[:6]}"
    key, secret = make_user(server, name, policy=None)
    before = scrape(server)
    caplog.set_level(logging.INFO, logger="openssm.refused")

    denied = server.call_json("AmazonSSM.DescribeSessions", {"State": "Active"}, credentials=(key, secret))
    assert denied.status == 400 and denied.json()["__type"] == "AccessDeniedException"
    [line] = refusals(caplog)
    assert line["principal"] == f"arn:aws:iam::{ACCOUNT}:user/{name}"
    assert line["action"] == "ssm:DescribeSessions"
    assert line["resource"] == "*"  # what DescribeSessions is authorised on, as on AWS
    assert line["code"] == "AccessDeniedException" and "no identity-based policy allows" in line["reason"]
    assert line["request_id"] == denied.headers["x-amzn-RequestId"]

    caplog.clear()
    forged = server.call_json("AmazonSSM.DescribeSessions", {"State": "Active"}, credentials=(key, "x" * 40))
    assert forged.status == 400
    [line] = refusals(caplog)
    assert line["principal"] == f"unauthenticated ({key})"
    assert line["code"] == "InvalidSignatureException"
    assert secret not in caplog.text and "Signature=" not in caplog.text

    caplog.clear()
    # The agent: an instance id the server does not know gets InvalidInstanceId.
    unknown = server.call_json("AmazonSSM.UpdateInstanceInformation", {"InstanceId": UNKNOWN_INSTANCE})
    assert unknown.status == 400 and unknown.json()["__type"] == "InvalidInstanceId"
    [line] = refusals(caplog)
    assert line["principal"].endswith(":user/admin")
    assert line["action"] == "ssm:UpdateInstanceInformation"
    assert line["resource"] == f"arn:aws:ssm:{REGION}:{ACCOUNT}:managed-instance/{UNKNOWN_INSTANCE}"
    assert line["code"] == "InvalidInstanceId"

    after = scrape(server)
    denials = metric(after, "openssm_authorization_denied_total", action="ssm:DescribeSessions")
    assert denials == metric(before, "openssm_authorization_denied_total", action="ssm:DescribeSessions") + 1
    requests = metric(after, "openssm_api_requests_total", action="ssm:DescribeSessions", code="400")
    assert (
        requests
        == metric(before, "openssm_api_requests_total", action="ssm:DescribeSessions", code="400") + 2
    )
    assert (
        metric(after, "openssm_api_request_duration_seconds_count", action="ssm:UpdateInstanceInformation")
        >= 1
    )
    assert "openssm_log_upload_backlog 0.0" in after


def _mgs_post(server: ApiServer, path: str, credentials: tuple[str, str] | None = None) -> HttpResult:
    key, secret = credentials or server.admin_credentials
    body = json.dumps(
        {"MessageSchemaVersion": "1.0", "RequestId": str(uuid.uuid4()), "ClientId": "x"}
    ).encode()
    url = server.endpoint + path
    headers = {"Content-Type": "application/json", "Host": f"127.0.0.1:{server.port}"}
    headers.update(
        sign_hmac(
            "POST",
            url,
            headers,
            body,
            access_key_id=key,
            secret_key=secret,
            session_token=None,
            region=REGION,
            service="ssmmessages",
        )
    )
    return server.post(headers, body, path)


def test_agent_rest_and_channel_refusals_are_logged(
    server: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="openssm.refused")
    refused = _mgs_post(server, f"/v1/control-channel/{UNKNOWN_INSTANCE}")
    assert refused.status == 400 and b"<InvalidInstanceId>" in refused.body
    [line] = refusals(caplog)
    assert (line["surface"], line["action"], line["code"]) == (
        "mgs",
        "ssmmessages:CreateControlChannel",
        "InvalidInstanceId",
    )
    assert line["principal"].endswith(":user/admin")
    assert line["resource"].endswith(f"managed-instance/{UNKNOWN_INSTANCE}")

    async def channels() -> tuple[int, str]:
        async with aiohttp.ClientSession() as http:
            # An agent control channel without a signature: refused before the upgrade.
            async with http.get(
                server.endpoint.replace("http", "ws") + f"/v1/control-channel/{UNKNOWN_INSTANCE}"
            ) as response:
                status = response.status
            # A client data channel with a token that was never issued.
            async with http.ws_connect(
                server.endpoint.replace("http", "ws") + "/v1/data-channel/admin-0123456789abcdef0"
            ) as ws:
                await ws.send_str(
                    json.dumps(
                        {"MessageSchemaVersion": "1.0", "RequestId": "r", "TokenValue": "forged-token"}
                    )
                )
                async for message in ws:
                    if message.type is aiohttp.WSMsgType.BINARY:
                        break
                request_id = ws._response.headers["x-amzn-RequestId"]
            return status, request_id

    caplog.clear()
    status, ws_request_id = asyncio.run(channels())
    assert status == 403
    control, data = refusals(caplog)
    assert (control["surface"], control["code"]) == ("control-channel", "MissingAuthenticationTokenException")
    assert (data["surface"], data["action"], data["code"]) == (
        "data-channel",
        "ssmmessages:OpenDataChannel",
        "InvalidToken",
    )
    assert data["principal"] == "unauthenticated"
    assert data["resource"].endswith(":session/admin-0123456789abcdef0")
    assert "forged-token" not in caplog.text
    assert data["request_id"] == ws_request_id  # the upgrade's response carried the id the log has
