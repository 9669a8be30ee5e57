"""Fuzz targets ``api_json`` and ``api_query``: request bodies through the server's real aiohttp
application, in this process, properly signed so that the fuzz reaches the handlers.

The server is the one ``openssm server`` runs (``create_services`` + ``compose``: API, gateway,
console, session logging) on SQLite in a temporary data directory, served on loopback by aiohttp's
``TestServer`` and called by its ``TestClient``. Setup registers what handlers look up: an
activation and a managed node (whose RSA key signs RequestManagedInstanceRoleToken and
UpdateManagedInstancePublicKey), an IAM user, group and managed policy.

Input: one line naming what to call, then the body.
- ``api_json``: ``<X-Amz-Target>\\n<JSON body>``. A first line that names no registered operation
  picks one by a hash of the line, so every input reaches some handler.
- ``api_query``: ``<service>\\n<form body>`` (service ``iam`` or ``sts``; the body's ``Action``
  picks the operation, as on the wire).

Checks: no HTTP 5xx, ever. A 500 is raised with the server's own traceback (the API logs it).
The fuzzer acts as the administrator, so it may lock itself out (detach its policy, delete its
key): an authentication or authorisation failure is followed by a check call, and when that fails
too the administrator is restored (``bootstrap``, as a restarted server would) before going on.
"""

from __future__ import annotations

import asyncio
import base64
import configparser
import json
import logging
import os
import shutil
import sys
import tempfile
import traceback
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from openssm.api import handlers, registry  # noqa: F401 - handlers registers every operation
from openssm.auth.rsa_identity import generate_key_pair
from openssm.auth.sigv4 import sign_hmac, sign_rsa
from openssm.server.bootstrap import bootstrap
from openssm.server.composition import compose
from openssm.server.process import close_services, create_services
from openssm.services import ServerConfig
from openssm.transport import runtime
from tests.fuzz import api_seeds

REGION = "us-east-1"
ACCOUNT = "123456789012"
JSON_TYPE = "application/x-amz-json-1.1"
FORM_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
LOCKED_OUT = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "AccessDenied",
    "AccessDeniedException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
}


def _scratch_dir() -> str | None:
    """Memory-backed when the machine has one: SQLite's fsync per commit would make each input
    take tens of milliseconds on disk, and the database is thrown away after the run."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


class _Errors(logging.Handler):
    """Keeps the tracebacks the API logs for its 500s, to raise them with the input."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.records.append(text)


# Findings reported and kept as strict xfails in tests/fuzz/test_fuzz_findings.py: (file, text) found
# in the logged traceback of a 500. Let through so that a long run goes on past them; a fix turns the
# xfail into a failure, and its entry here should go. (None open: the four found so far are fixed.)
KNOWN_500: list[tuple[str, str]] = []


# Every store call hands a function to aiosqlite's worker thread and waits for its answer; with
# Python's default 5 ms the thread that has the GIL keeps it that long before the other may run,
# which made most of an input's time waiting. A shorter interval only changes when threads switch.
SWITCH_INTERVAL = 0.0002


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop ``openssm server`` runs on (``transport.runtime``: uvloop unless told otherwise)."""
    if runtime.event_loop_name() == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class ServerError(AssertionError):
    """The server answered 5xx."""


class ApiFuzzer:
    def __init__(self) -> None:
        self.loop = _new_event_loop()
        self.data_dir = Path(tempfile.mkdtemp(prefix="openssm-fuzz-api-", dir=_scratch_dir()))
        self.errors = _Errors()
        logging.getLogger("openssm").addHandler(self.errors)
        logging.getLogger("openssm").setLevel(logging.ERROR)
        self.fixtures: dict[str, str] = {}
        self.loop.run_until_complete(self._start())

    # -- server ---------------------------------------------------------------------------------
    async def _start(self) -> None:
        config = ServerConfig(
            data_dir=self.data_dir / "data",
            region=REGION,
            account_id=ACCOUNT,
            public_url="http://127.0.0.1:8080",
            record_sessions=False,
        )
        self.services = await create_services(config)
        self.client = TestClient(TestServer(compose(self.services).app))
        await self.client.start_server()
        # GetMessages holds an agent's request for 20 s (the MDS long poll) unless the server is
        # stopping; as if it were, it answers at once and the per-input time limit stays meaningful.
        self.services.stopping.set()
        self._read_admin_key()
        await self._fixtures()

    def _read_admin_key(self) -> None:
        parser = configparser.ConfigParser()
        parser.read(self.services.config.data_dir / "credentials")
        self.key = parser["openssm"]["aws_access_key_id"]
        self.secret = parser["openssm"]["aws_secret_access_key"]

    async def _fixtures(self) -> None:
        """What handlers look things up by: names the seeds use (see api_seeds.FIXTURE_VALUES)."""
        await self.query("iam", {"Action": "CreateUser", "UserName": "alice"})
        await self.query("iam", {"Action": "CreateGroup", "GroupName": "ops"})
        created = await self.query(
            "iam",
            {"Action": "CreatePolicy", "PolicyName": "fuzz", "PolicyDocument": api_seeds.POLICY},
        )
        assert created[0] == 200, created
        activation = await self.json("AmazonSSM.CreateActivation", {"IamRole": "OpenSSMNodeRole"})
        body = json.loads(activation[1])
        private_der, public_der = generate_key_pair()
        registered = await self.json(
            "AmazonSSM.RegisterManagedInstance",
            {
                "ActivationCode": body["ActivationCode"],
                "ActivationId": body["ActivationId"],
                "Fingerprint": "fuzz-fingerprint",
                "PublicKey": base64.b64encode(public_der).decode(),
                "PublicKeyType": "Rsa",
            },
        )
        assert registered[0] == 200, registered
        self.instance_id = json.loads(registered[1])["InstanceId"]
        self.instance_key = private_der

    def close(self) -> None:
        async def stop() -> None:
            await self.client.close()
            await close_services(self.services)

        self.loop.run_until_complete(stop())
        self.loop.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- requests -------------------------------------------------------------------------------
    async def post(self, headers: dict[str, str], body: bytes, service: str, auth: str) -> tuple[int, bytes]:
        headers = {**headers, "Host": f"127.0.0.1:{self.client.port}"}
        url = f"http://127.0.0.1:{self.client.port}/"
        common: dict[str, Any] = {
            "method": "POST",
            "url": url,
            "headers": headers,
            "body": body,
            "region": REGION,
        }
        if auth == "rsa":
            key: dict[str, Any] = {"instance_id": self.instance_id, "private_key_der": self.instance_key}
            headers.update(sign_rsa(**common, **key, service=service))
        elif auth == "sigv4":
            key = {"access_key_id": self.key, "secret_key": self.secret, "session_token": None}
            headers.update(sign_hmac(**common, **key, service=service))
        # Through the client's session, not TestClient.post: TestClient keeps every response it
        # made until it closes (about 7 KB an input), which ran a long fuzz run out of memory.
        async with self.client.session.post(url, data=body, headers=headers) as response:
            return response.status, await response.read()

    async def json(self, target: str, payload: dict[str, Any] | bytes) -> tuple[int, bytes]:
        operation = registry.find_json(target)
        auth = operation.auth if operation is not None else "sigv4"
        prefix = target.rpartition(".")[0]
        service = registry.SIGNING_NAMES.get(prefix, "ssm")
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return await self.post({"Content-Type": JSON_TYPE, "X-Amz-Target": target}, body, service, auth)

    async def query(self, service: str, form: dict[str, str] | bytes) -> tuple[int, bytes]:
        body = form if isinstance(form, bytes) else urllib.parse.urlencode(form).encode()
        return await self.post({"Content-Type": FORM_TYPE}, body, service, "sigv4")

    # -- one input ---------------------------------------------------------------------------------
    def run(self, call: Callable[[], Any]) -> tuple[int, bytes]:
        self.errors.records.clear()
        status, body = self.loop.run_until_complete(call())
        if status >= 500:
            logged = "\n".join(self.errors.records) or "(nothing logged)"
            if any(path in logged and text in logged for path, text in KNOWN_500):
                return status, body
            raise ServerError(f"HTTP {status}: {body[:500]!r}\nserver log:\n{logged}")
        if status in (400, 403) and any(code.encode() in body for code in LOCKED_OUT):
            self._unlock()
        return status, body

    def _unlock(self) -> None:
        """If the administrator can no longer call the API, restore it as a restart would."""
        status, _ = self.loop.run_until_complete(self.query("sts", {"Action": "GetCallerIdentity"}))
        check, _ = self.loop.run_until_complete(self.query("iam", {"Action": "ListUsers"}))
        if status == 200 and check == 200:
            return
        self.loop.run_until_complete(bootstrap(self.services))
        self._read_admin_key()


_fuzzer: ApiFuzzer | None = None


def json_targets() -> list[str]:
    """Every registered JSON 1.1 operation (``<X-Amz-Target prefix>.<operation>``)."""
    return sorted(name for name in registry.registered() if ":" not in name)


def query_operations() -> list[tuple[str, str]]:
    """Every registered Query operation as (service, action)."""
    pairs = (name.partition(":") for name in registry.registered() if ":" in name)
    return sorted((service, action) for service, _, action in pairs)


def setup(name: str) -> Callable[[bytes], None]:
    global _fuzzer
    sys.setswitchinterval(SWITCH_INTERVAL)
    fuzzer = _fuzzer = ApiFuzzer()
    targets = json_targets()

    def one_json(data: bytes) -> None:
        head, _, body = data.partition(b"\n")
        target = head.decode("latin-1")
        if target not in targets:
            target = targets[zlib.crc32(head) % len(targets)]
        fuzzer.run(lambda: fuzzer.json(target, api_seeds.fill(body, fuzzer.instance_id)))

    def one_query(data: bytes) -> None:
        head, _, body = data.partition(b"\n")
        service = "sts" if head == b"sts" else "iam"
        fuzzer.run(lambda: fuzzer.query(service, api_seeds.fill(body, fuzzer.instance_id)))

    return one_json if name == "api_json" else one_query


def seeds(name: str) -> Iterator[bytes]:
    if name == "api_json":
        yield from api_seeds.json_seeds(json_targets())
    else:
        yield from api_seeds.query_seeds(query_operations())
