"""The API (``POST /``: SSM JSON 1.1, IAM/STS Query) in the test's own event loop, on a real store,
with a clock the test moves (``ManualClock``): expiry and ages are tested by moving time, never by
waiting for it. Requests are SigV4-signed at the clock's time with ``openssm.auth.sigv4.sign_hmac``."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import pathlib
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from openssm.api.app import install
from openssm.auth.sigv4 import sign_hmac
from openssm.bus.inprocess import InProcessBus
from openssm.clock import ManualClock
from openssm.services import ServerConfig, Services
from openssm.store import access_keys
from openssm.store.db import database_url_for, make_engine, migrate
from openssm.store.iam import holder_policies, users
from openssm.store.secrets import SecretCipher

ACCOUNT = "123456789012"
REGION = "us-east-1"
Credentials = tuple[str, ...]  # (key id, secret) or (key id, secret, session token)


@dataclasses.dataclass
class Reply:
    status: int
    text: str

    def xml(self, *path: str) -> str:
        """The text of the first element named by ``path`` (namespaces ignored)."""
        node: ET.Element | None = ET.fromstring(self.text)
        for name in path:
            assert node is not None
            node = next((child for child in node.iter() if child.tag.rsplit("}", 1)[-1] == name), None)
        assert node is not None, f"{path} not in {self.text}"
        return node.text or ""

    @property
    def code(self) -> str:
        if self.text.startswith("{"):
            return str(json.loads(self.text).get("__type", ""))
        return self.xml("Code")


@dataclasses.dataclass
class Api:
    services: Services
    clock: ManualClock
    server: TestServer
    http: aiohttp.ClientSession

    async def _post(
        self, headers: dict[str, str], body: bytes, credentials: Credentials | None, service: str
    ) -> Reply:
        url = str(self.server.make_url("/"))
        headers = {**headers, "Host": f"{self.server.host}:{self.server.port}"}
        if credentials is not None:
            key, secret, *token = credentials
            headers.update(
                sign_hmac(
                    "POST", url, headers, body, access_key_id=key, secret_key=secret,
                    session_token=token[0] if token else None, region=REGION, service=service, now=self.clock.now(),
                )
            )  # fmt: skip
        async with self.http.post(url, data=body, headers=headers) as response:
            return Reply(response.status, await response.text())

    async def query(self, service: str, form: Mapping[str, str], credentials: Credentials | None) -> Reply:
        body = urllib.parse.urlencode({"Version": "2011-06-15" if service == "sts" else "2010-05-08", **form})
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        return await self._post(headers, body.encode(), credentials, service)

    async def ssm(self, operation: str, payload: dict[str, Any], credentials: Credentials) -> Reply:
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"AmazonSSM.{operation}"}
        return await self._post(headers, json.dumps(payload).encode(), credentials, "ssm")

    async def user(self, name: str, policy: dict[str, Any]) -> tuple[str, str]:
        """An IAM user with an inline policy and a long-term access key."""
        engine, now = self.services.engine, self.clock.now()
        await users.create(engine, ACCOUNT, name, "/", {}, now)
        await holder_policies.put_inline(engine, "user", name, "test", json.dumps(policy))
        issued = await access_keys.create_long_term(
            engine, self.services.cipher, principal_type="user", principal_name=name, now=now
        )
        return issued.access_key_id, issued.secret_access_key


@contextlib.asynccontextmanager
async def running_api(
    tmp_path: pathlib.Path, *, database_url: str | None = None, **config: Any
) -> AsyncIterator[Api]:
    """``database_url``: another database than SQLite in ``tmp_path`` (an empty one: it is migrated)."""
    clock = ManualClock(dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC))
    server_config = ServerConfig(data_dir=tmp_path, region=REGION, account_id=ACCOUNT, **config)
    engine = make_engine(database_url or database_url_for(tmp_path), server_config.database_pool)
    await migrate(engine)
    services = Services(
        config=server_config,
        engine=engine,
        bus=InProcessBus(),
        cipher=SecretCipher.generate(),
        clock=clock,
    )
    app = web.Application()
    install(app, services)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Api(services, clock, server, http)
    finally:
        await server.close()
        await engine.dispose()
