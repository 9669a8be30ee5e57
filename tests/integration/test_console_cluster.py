"""Console sign-in on two server nodes sharing PostgreSQL and Redis, as behind a load balancer: the
throttle counts failures on both nodes together (Redis), and a TOTP code accepted by one node is
refused by the other (the replay guard in the shared database)."""

from __future__ import annotations

import base64
import http.client
import secrets
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.api_harness import ApiServer
from tests.integration.test_console_http import Browserish, new_user
from tests.support.postgres import REDIS_URL, fresh_postgres_database, require_postgres_and_redis

from openssm.bus.failures import FailureLog, MemoryFailureLog
from openssm.bus.redis import RedisBus
from openssm.security.login_secrets import totp


class FromAddress(Browserish):
    """A browser behind the trusted proxy at a client address of its own, so the per-address count
    of this test is not shared with other tests using the same Redis."""

    def __init__(self, server: ApiServer, address: str) -> None:
        super().__init__(server)
        self.address = address

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        return super().request(method, path, body, {"X-Forwarded-For": self.address, **(headers or {})})


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, ApiServer]]:
    require_postgres_and_redis()
    base = tmp_path_factory.mktemp("console-cluster")
    with fresh_postgres_database() as database_url:
        shared: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": REDIS_URL,
            "trusted_proxies": ("127.0.0.1/32",),
        }
        first = ApiServer(base / "node-1", node_id="node-1", **shared).start()
        try:
            # The second node gets the first one's master key (as OPENSSM_MASTER_KEY would give it).
            (base / "node-2").mkdir()
            shutil.copy(base / "node-1" / "master.key", base / "node-2" / "master.key")
            shutil.copy(base / "node-1" / "credentials", base / "node-2" / "credentials")
            second = ApiServer(base / "node-2", node_id="node-2", **shared).start()
            try:
                yield first, second
            finally:
                second.stop()
        finally:
            first.stop()


def address() -> str:
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def test_failed_sign_ins_on_one_node_throttle_the_other(nodes: tuple[ApiServer, ApiServer]) -> None:
    first, second = nodes
    key, secret = new_user(first, f"throttled-{secrets.token_hex(3)}", None)
    for _ in range(5):  # the access key's free failures, all on the first node
        status, _, _ = FromAddress(first, address()).sign_in(key, "wrong-secret")
        assert status == 401
    status, body, headers = FromAddress(second, address()).sign_in(key, secret)
    assert status == 429, body
    assert int(headers["Retry-After"]) >= 1


def test_failures_from_one_address_count_on_every_node(nodes: tuple[ApiServer, ApiServer]) -> None:
    first, second = nodes
    client_address = address()
    for index in range(20):  # an address's free failures, spread over both nodes and many keys
        node = (first, second)[index % 2]
        status, _, _ = FromAddress(node, client_address).sign_in(f"AKIA{secrets.token_hex(8).upper()}", "x")
        assert status == 401
    key, secret = new_user(first, f"shared-nat-{secrets.token_hex(3)}", None)
    assert FromAddress(first, client_address).sign_in(key, secret)[0] == 429
    assert FromAddress(second, client_address).sign_in(key, secret)[0] == 429
    assert FromAddress(second, address()).sign_in(key, secret)[0] == 200  # another address is not held


def test_a_totp_code_used_on_one_node_is_refused_by_the_other(nodes: tuple[ApiServer, ApiServer]) -> None:
    first, second = nodes
    name = f"mfa-{secrets.token_hex(3)}"
    key, secret = new_user(first, name, None)
    iam = first.client("iam")
    device = iam.create_virtual_mfa_device(VirtualMFADeviceName=name)["VirtualMFADevice"]
    seed_text = device["Base32StringSeed"].decode()
    seed = base64.b32decode(seed_text + "=" * (-len(seed_text) % 8))
    now = time.time()
    step_start = now - now % 30
    iam.enable_mfa_device(
        UserName=name,
        SerialNumber=device["SerialNumber"],
        AuthenticationCode1=totp(seed, step_start - 30),
        AuthenticationCode2=totp(seed, step_start),
    )
    code = totp(seed, step_start + 30)  # the next step's code: within the accepted drift
    assert FromAddress(first, address()).sign_in(key, secret, mfa_code=code)[0] == 200
    status, body, _ = FromAddress(second, address()).sign_in(key, secret, mfa_code=code)
    assert status == 401 and "not correct" in body["message"]


async def test_the_redis_log_keeps_what_the_memory_log_keeps() -> None:
    """Both logs, fed the same failures at the same times, give the same answers."""
    require_postgres_and_redis()
    bus = RedisBus(REDIS_URL)
    try:
        logs: list[FailureLog] = [MemoryFailureLog(), bus.failure_log(f"test-{secrets.token_hex(6)}")]
        answers = []
        for log in logs:
            seen = []
            for t in (100.0, 101.0, 102.0, 103.0):
                await log.add("k", t, window=60, keep=3)
            seen.append(await log.recent("k", 103.0, 60))  # the latest 3 kept
            seen.append(await log.recent("k", 161.5, 60))  # 100 and 101 are out of the window
            seen.append(await log.recent("other", 103.0, 60))
            await log.clear("k")
            seen.append(await log.recent("k", 103.0, 60))
            answers.append(seen)
        assert answers[0] == answers[1] == [[101.0, 102.0, 103.0], [102.0, 103.0], [], []]
    finally:
        await bus.close()
