"""AssumeRoleWithWebIdentity refusals that need no browser: an issuer whose keys cannot be fetched
(``IDPCommunicationError``), session policies (refused rather than ignored), a bad session name.
The flows with a real OpenID provider are in ``tests/browser/test_web_identity.py``."""

from __future__ import annotations

import json
import pathlib

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from tests.support.inprocess_api import ACCOUNT, running_api
from tests.support.net import free_port

from openssm.store.iam import oidc_providers, roles

ROLE = "Federated"
TRUST_ANYONE_FEDERATED = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRoleWithWebIdentity"}],
}


async def test_refusals_before_any_key_is_checked(tmp_path: pathlib.Path) -> None:
    host_port = f"127.0.0.1:{free_port()}"  # nothing listens there
    key = ec.generate_private_key(ec.SECP256R1())
    async with running_api(tmp_path) as api:
        now = api.clock.now()
        stamp = int(now.timestamp())
        claims = {
            "iss": f"http://{host_port}",
            "aud": "app",
            "sub": "alice",
            "iat": stamp,
            "exp": stamp + 300,
        }
        token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})
        engine = api.services.engine
        await oidc_providers.create(
            engine,
            ACCOUNT,
            url=host_port,
            scheme="http",
            client_ids=["app"],
            thumbprints=[],
            tags={},
            now=now,
        )
        await roles.create(engine, ACCOUNT, ROLE, "/", json.dumps(TRUST_ANYONE_FEDERATED), None, {}, now)
        form = {
            "Action": "AssumeRoleWithWebIdentity",
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/{ROLE}",
            "RoleSessionName": "alice",
            "WebIdentityToken": token,
        }
        reply = await api.query("sts", form, None)
        assert (reply.status, reply.code) == (400, "IDPCommunicationError"), reply.text
        # A session policy would narrow the session; ignoring it would grant more: refused.
        policy = {**form, "Policy": json.dumps(TRUST_ANYONE_FEDERATED)}
        assert (await api.query("sts", policy, None)).code == "ValidationError"
        bad_name = await api.query("sts", {**form, "RoleSessionName": "a b"}, None)
        assert bad_name.code == "ValidationError"
        # Not a JWT at all, and a JWT from an issuer with no IAM provider.
        assert (
            await api.query("sts", {**form, "WebIdentityToken": "not-a-token"}, None)
        ).code == "InvalidIdentityToken"
        stranger = jwt.encode(
            {**claims, "iss": "https://idp.example.internal:8443/realms/ops"}, key, algorithm="ES256"
        )
        reply = await api.query("sts", {**form, "WebIdentityToken": stranger}, None)
        assert reply.code == "InvalidIdentityToken"
        assert (
            "No OpenIDConnect provider found in your account for https://idp.example.internal:8443/realms/ops"
            in reply.text
        )
