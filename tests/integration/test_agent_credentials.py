"""The credentials an activated node gets from RequestManagedInstanceRoleToken, with the server's one
clock moved by the test: they expire when TokenExpirationDate says, a refresh gives new ones while
the old live out their hour, a deregistered node's stop at once, and an RSA-signed request sent
again (same signature, later) is refused, on one node and across nodes sharing a Redis."""

from __future__ import annotations

import base64
import configparser
import datetime as dt
import json
import pathlib
import secrets
from collections.abc import AsyncIterator

import pytest
from tests.conftest import require
from tests.support.inprocess_api import REGION, Api, Credentials, Reply, running_api
from tests.support.postgres import REDIS_URL, redis_problem

from openssm.auth.rsa_identity import generate_key_pair
from openssm.auth.sigv4 import sign_rsa
from openssm.bus.inprocess import InProcessBus
from openssm.bus.redis import RedisBus
from openssm.server.bootstrap import bootstrap

FINGERPRINT = "fingerprint-1"


@pytest.fixture
async def api(tmp_path: pathlib.Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as started:
        await bootstrap(started.services)  # the administrator and the node role
        yield started


def admin(api: Api) -> Credentials:
    parser = configparser.ConfigParser()
    parser.read(api.services.config.data_dir / "credentials")
    return parser["openssm"]["aws_access_key_id"], parser["openssm"]["aws_secret_access_key"]


def json_headers(operation: str) -> dict[str, str]:
    return {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"AmazonSSM.{operation}"}


async def register(api: Api) -> tuple[str, bytes]:
    """An activated node, as the agent registers: its instance id and private key."""
    activation = json.loads(
        (await api.ssm("CreateActivation", {"IamRole": "OpenSSMNodeRole"}, admin(api))).text
    )
    private_der, public_der = generate_key_pair()
    body = {
        "ActivationCode": activation["ActivationCode"],
        "ActivationId": activation["ActivationId"],
        "Fingerprint": FINGERPRINT,
        "PublicKey": base64.b64encode(public_der).decode(),
        "PublicKeyType": "Rsa",
    }
    reply = await api._post(json_headers("RegisterManagedInstance"), json.dumps(body).encode(), None, "ssm")
    assert reply.status == 200, reply.text
    return str(json.loads(reply.text)["InstanceId"]), private_der


def signed_token_request(api: Api, instance_id: str, private_der: bytes) -> tuple[dict[str, str], bytes]:
    """RequestManagedInstanceRoleToken RSA-signed at the clock's time: the headers and body to send."""
    body = json.dumps({"Fingerprint": FINGERPRINT}).encode()
    headers = {
        **json_headers("RequestManagedInstanceRoleToken"),
        "Host": f"{api.server.host}:{api.server.port}",
    }
    url = str(api.server.make_url("/"))
    signature = sign_rsa(
        "POST", url, headers, body, instance_id=instance_id, private_key_der=private_der, region=REGION,
        now=api.clock.now(),
    )  # fmt: skip
    return {**headers, **signature}, body


async def send(api: Api, headers: dict[str, str], body: bytes) -> Reply:
    async with api.http.post(str(api.server.make_url("/")), data=body, headers=headers) as response:
        return Reply(response.status, await response.text())


async def role_credentials(api: Api, instance_id: str, private_der: bytes) -> tuple[Credentials, dt.datetime]:
    reply = await send(api, *signed_token_request(api, instance_id, private_der))
    assert reply.status == 200, reply.text
    answer = json.loads(reply.text)
    expires = dt.datetime.fromtimestamp(answer["TokenExpirationDate"], dt.UTC)
    return (answer["AccessKeyId"], answer["SecretAccessKey"], answer["SessionToken"]), expires


async def ping(api: Api, instance_id: str, credentials: Credentials) -> Reply:
    return await api.ssm(
        "UpdateInstanceInformation", {"InstanceId": instance_id, "AgentName": "t"}, credentials
    )


async def test_role_credentials_expire_when_they_say(api: Api) -> None:
    instance_id, private_der = await register(api)
    credentials, expires = await role_credentials(api, instance_id, private_der)
    assert expires == api.clock.now() + dt.timedelta(hours=1)
    assert (await ping(api, instance_id, credentials)).status == 200
    api.clock.advance(3599)
    assert (await ping(api, instance_id, credentials)).status == 200
    api.clock.advance(1)
    assert (await ping(api, instance_id, credentials)).code == "ExpiredTokenException"


async def test_a_refresh_gives_new_credentials_and_the_old_ones_live_out_their_hour(api: Api) -> None:
    """The agent refreshes before expiry (at a fraction of the lifetime); both sets work until each
    one's own expiry, so a refresh never leaves a request in flight without credentials."""
    instance_id, private_der = await register(api)
    first, first_expires = await role_credentials(api, instance_id, private_der)
    api.clock.advance(45 * 60)
    second, second_expires = await role_credentials(api, instance_id, private_der)
    assert second[0] != first[0] and second_expires - first_expires == dt.timedelta(minutes=45)
    assert (await ping(api, instance_id, first)).status == 200
    assert (await ping(api, instance_id, second)).status == 200
    api.clock.advance(15 * 60)
    assert (await ping(api, instance_id, first)).code == "ExpiredTokenException"
    assert (await ping(api, instance_id, second)).status == 200
    api.clock.advance(45 * 60)
    assert (await ping(api, instance_id, second)).code == "ExpiredTokenException"


async def test_a_deregistered_nodes_credentials_stop_at_once(api: Api) -> None:
    """Well within one refresh period: the next request fails, not the next refresh."""
    instance_id, private_der = await register(api)
    credentials, _ = await role_credentials(api, instance_id, private_der)
    assert (await ping(api, instance_id, credentials)).status == 200
    reply = await api.ssm("DeregisterManagedInstance", {"InstanceId": instance_id}, admin(api))
    assert reply.status == 200, reply.text
    assert (await ping(api, instance_id, credentials)).code == "UnrecognizedClientException"
    refused = await send(api, *signed_token_request(api, instance_id, private_der))
    assert refused.code == "UnrecognizedClientException"  # no new ones either


async def test_a_replayed_rsa_signed_request_is_refused(api: Api) -> None:
    instance_id, private_der = await register(api)
    headers, body = signed_token_request(api, instance_id, private_der)
    assert (await send(api, headers, body)).status == 200
    api.clock.advance(60)  # later, and still within the allowed clock skew of the request's date
    replay = await send(api, headers, body)
    assert (replay.status, replay.code) == (400, "InvalidSignatureException")
    assert "already been used" in replay.text
    assert (await send(api, *signed_token_request(api, instance_id, private_der))).status == 200
    api.clock.advance(600)  # past the skew: the date refuses it, as it always did
    assert (await send(api, headers, body)).code == "InvalidSignatureException"


async def test_the_replay_guard_forgets_only_after_the_skew_has_passed() -> None:
    bus = InProcessBus()
    assert await bus.first_use("n", "sig", now=1000.0, ttl=601)
    assert not await bus.first_use("n", "sig", now=1600.0, ttl=601)
    assert not await bus.first_use("n", "sig", now=1600.9, ttl=601)
    assert await bus.first_use("n", "sig", now=1601.0, ttl=601)  # its date is long refused by then
    assert await bus.first_use("other", "sig", now=1000.0, ttl=601)


async def test_a_signature_used_on_one_node_is_refused_by_another() -> None:
    """Two nodes' buses on one Redis: the request replayed to the other node behind the balancer."""
    problem = redis_problem()
    require(problem is None, problem or "")
    first, second = RedisBus(REDIS_URL), RedisBus(REDIS_URL)
    try:
        signature = secrets.token_hex(32)
        assert await first.first_use("rsa-signature", signature, now=0.0, ttl=600)
        assert not await second.first_use("rsa-signature", signature, now=0.0, ttl=600)
        assert not await first.first_use("rsa-signature", signature, now=0.0, ttl=600)
    finally:
        await first.close()
        await second.close()
