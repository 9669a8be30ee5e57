"""A real OpenSSM server (API + gateway) on a free loopback port, run in a thread of the test process,
plus helpers to sign raw requests and to put state in its database.

With ``OPENSSM_TEST_DATABASE=postgresql`` each server gets a fresh PostgreSQL database (on
``OPENSSM_TEST_POSTGRES_URL``, dropped when the server stops) instead of SQLite: the scale-out store.
"""

from __future__ import annotations

import asyncio
import configparser
import dataclasses
import datetime as dt
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Self, TypeVar

import boto3
from botocore.config import Config
from tests.support import postgres
from tests.support.net import free_port

from openssm.auth.sigv4 import sign_hmac
from openssm.server.process import serve
from openssm.services import ServerConfig
from openssm.store.db import database_url_for, make_engine

REGION = "us-east-1"
ACCOUNT = "123456789012"
T = TypeVar("T")


@dataclasses.dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ApiServer:
    def __init__(self, data_dir: pathlib.Path, **overrides: Any) -> None:
        self._postgres_database: str | None = None
        if os.environ.get("OPENSSM_TEST_DATABASE") == "postgresql" and "database_url" not in overrides:
            postgres.require_postgres()
            self._postgres_database, overrides["database_url"] = postgres.create_database()
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.config = ServerConfig(
            data_dir=data_dir,
            listen_port=self.port,
            public_url=self.endpoint,
            region=REGION,
            account_id=ACCOUNT,
            **overrides,
        )
        self.region = self.config.region  # what tests/e2e/harness.Agent registers with
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._error is not None:
                raise RuntimeError("server failed to start") from self._error
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    if (self.config.data_dir / "credentials").exists():
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError("server did not start")

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(self.config, self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._postgres_database is not None:
            postgres.drop_database(self._postgres_database)
            self._postgres_database = None

    # -- clients ----------------------------------------------------------------------------------
    @property
    def admin_credentials(self) -> tuple[str, str]:
        parser = configparser.ConfigParser()
        parser.read(self.config.data_dir / "credentials")
        return parser["openssm"]["aws_access_key_id"], parser["openssm"]["aws_secret_access_key"]

    def client(self, service: str = "ssm", credentials: tuple[str, ...] | None = None) -> Any:
        key, secret, *token = credentials or self.admin_credentials
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=token[0] if token else None,
            config=Config(retries={"max_attempts": 1}),
        )

    def aws(self, *args: str, credentials: tuple[str, ...] | None = None) -> dict[str, Any]:
        """The real AWS CLI as the administrator (or as ``credentials``); its JSON output."""
        key, secret, *token = credentials or self.admin_credentials
        env = {
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            **({"AWS_SESSION_TOKEN": token[0]} if token else {}),
            "AWS_DEFAULT_REGION": self.region,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
        argv = [str(pathlib.Path(sys.executable).parent / "aws"), *args, "--endpoint-url", self.endpoint]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout) if done.stdout.strip() else {}
        return result

    def post(self, headers: dict[str, str], body: bytes, path: str = "/") -> HttpResult:
        request = urllib.request.Request(self.endpoint + path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return HttpResult(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return HttpResult(error.code, dict(error.headers), error.read())

    def call_json(
        self,
        target: str,
        payload: dict[str, Any] | bytes,
        *,
        credentials: tuple[str, ...] | None = None,
        service: str = "ssm",
        now: dt.datetime | None = None,
        signed: bool = True,
    ) -> HttpResult:
        """A JSON 1.1 call signed with our own signer (for requests boto3 would refuse to send)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
        return self._signed_post(headers, body, credentials, service, now, signed)

    def call_query(
        self, service: str, form: Mapping[str, str] | bytes, *, credentials: tuple[str, ...] | None = None
    ) -> HttpResult:
        """A Query (IAM/STS) call with a form body, signed with our own signer."""
        body = form if isinstance(form, bytes) else urllib.parse.urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        return self._signed_post(headers, body, credentials, service, None, True)

    def _signed_post(
        self,
        headers: dict[str, str],
        body: bytes,
        credentials: tuple[str, ...] | None,
        service: str,
        now: dt.datetime | None,
        signed: bool,
    ) -> HttpResult:
        headers = {**headers, "Host": f"127.0.0.1:{self.port}"}
        if signed:
            key, secret, *token = credentials or self.admin_credentials
            headers.update(
                sign_hmac(
                    "POST",
                    self.endpoint + "/",
                    headers,
                    body,
                    access_key_id=key,
                    secret_key=secret,
                    session_token=token[0] if token else None,
                    region=REGION,
                    service=service,
                    now=now,
                )
            )
        return self.post(headers, body)

    # -- database -----------------------------------------------------------------------------------
    def db(self, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``work(engine)`` against the server's database (from the test thread, own loop)."""

        async def run() -> T:
            engine = make_engine(self.config.database_url or database_url_for(self.config.data_dir))
            try:
                return await work(engine)
            finally:
                await engine.dispose()

        return asyncio.run(run())


def make_user(
    server: ApiServer, name: str, policy: dict[str, Any] | None, tags: dict[str, str] | None = None
) -> tuple[str, str]:
    """An IAM user with an optional inline policy and a fresh access key, written straight to the store."""
    from openssm.store import access_keys
    from openssm.store.iam import holder_policies, users
    from openssm.store.secrets import SecretCipher

    async def work(engine: Any) -> tuple[str, str]:
        now = dt.datetime.now(dt.UTC)
        await users.create(engine, ACCOUNT, name, "/", tags or {}, now)
        if policy is not None:
            await holder_policies.put_inline(engine, "user", name, "test", json.dumps(policy))
        issued = await access_keys.create_long_term(
            engine,
            SecretCipher.for_data_dir(server.config.data_dir),
            principal_type="user",
            principal_name=name,
            now=now,
        )
        return issued.access_key_id, issued.secret_access_key

    return server.db(work)


def connect_instance(server: ApiServer, instance_id: str, node_id: str | None = None) -> None:
    """What the gateway records when an agent's control channel opens on a node."""
    from openssm.store import instances

    async def work(engine: Any) -> None:
        await instances.set_control_node(
            engine, instance_id, node_id or server.config.node_id, now=dt.datetime.now(dt.UTC)
        )

    server.db(work)


@dataclasses.dataclass
class RegisteredNode:
    instance_id: str
    private_key_der: bytes
    fingerprint: str


def register_node(
    server: ApiServer, code: str, activation_id: str, fingerprint: str = "fp-1"
) -> RegisteredNode:
    """RegisterManagedInstance exactly as the agent sends it: unsigned, Go-compact JSON."""
    import base64

    from openssm.auth.rsa_identity import generate_key_pair

    private_der, public_der = generate_key_pair()
    body = json.dumps(
        {
            "ActivationCode": code,
            "ActivationId": activation_id,
            "Fingerprint": fingerprint,
            "PublicKey": base64.b64encode(public_der).decode(),
            "PublicKeyType": "Rsa",
        },
        separators=(",", ":"),
    ).encode()
    result = server.call_json("AmazonSSM.RegisterManagedInstance", body, signed=False)
    assert result.status == 200, result.body
    return RegisteredNode(result.json()["InstanceId"], private_der, fingerprint)


def rsa_signed_call(
    server: ApiServer,
    node: RegisteredNode,
    operation: str,
    payload: dict[str, Any],
    private_key_der: bytes | None = None,
) -> HttpResult:
    """An ``AmazonSSM.<operation>`` call signed as the agent signs with its registration key."""
    from openssm.auth.sigv4 import sign_rsa

    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"AmazonSSM.{operation}",
        "Host": f"127.0.0.1:{server.port}",
    }
    headers.update(
        sign_rsa(
            "POST",
            server.endpoint + "/",
            headers,
            body,
            instance_id=node.instance_id,
            private_key_der=private_key_der or node.private_key_der,
            region=REGION,
        )
    )
    return server.post(headers, body)


def request_role_token(
    server: ApiServer,
    node: RegisteredNode,
    *,
    private_key_der: bytes | None = None,
    fingerprint: str | None = None,
) -> HttpResult:
    return rsa_signed_call(
        server,
        node,
        "RequestManagedInstanceRoleToken",
        {"Fingerprint": fingerprint or node.fingerprint},
        private_key_der,
    )


def node_credentials(server: ApiServer, node: RegisteredNode) -> tuple[str, str, str]:
    result = request_role_token(server, node)
    assert result.status == 200, result.body
    answer = result.json()
    return answer["AccessKeyId"], answer["SecretAccessKey"], answer["SessionToken"]
