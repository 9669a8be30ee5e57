"""Admission control: the throttling answers' shapes and who is refused at which fill level."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from tests.support.wait import wait_for

from openssm.server.admission import Admission, connection_ceiling, connection_limit, throttled_response


async def _ok(_: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


def test_limits_keep_a_reserve_below_the_open_files_limit() -> None:
    assert connection_limit(1024) == 1024 - 128 - 102
    assert connection_ceiling(1024) == 1024 - 64
    assert connection_limit(20_000) > 17_000  # a raised limit holds well past 10,000 agents
    assert connection_limit(10) == connection_ceiling(10) == 16  # never nothing at all


def test_throttling_answers_take_the_shape_of_each_api() -> None:
    api = throttled_response(make_mocked_request("POST", "/", headers={"X-Amz-Target": "AmazonSSM.X"}))
    assert api.status == 400 and api.text is not None
    assert json.loads(api.text) == {"__type": "ThrottlingException", "message": "Rate exceeded"}
    gateway = throttled_response(make_mocked_request("POST", "/v1/control-channel/mi-0"))
    assert gateway.status == 429 and gateway.text is not None and "<ThrottlingException>" in gateway.text
    assert 1 <= int(gateway.headers["Retry-After"]) <= 10


async def test_new_agents_are_refused_past_the_limit_and_everything_past_the_ceiling() -> None:
    connections = 0
    admission = Admission(limit=10, ceiling=20)
    admission.count_with(lambda: connections)
    control = make_mocked_request("POST", "/v1/control-channel/mi-0")
    api = make_mocked_request("POST", "/", headers={"X-Amz-Target": "AmazonSSM.UpdateInstanceInformation"})

    connections = 10
    assert (await admission.middleware(control, _ok)).status == 200
    served = await admission.middleware(api, _ok)
    assert served.status == 200 and served.keep_alive is not False

    connections = 11
    assert (await admission.middleware(control, _ok)).status == 429
    served = await admission.middleware(api, _ok)
    assert served.status == 200 and served.keep_alive is False  # answered, its descriptor given back

    connections = 21
    assert (await admission.middleware(api, _ok)).status == 400
    assert admission.refused == 2


async def test_requests_beyond_the_in_flight_limit_are_throttled_at_once() -> None:
    admission = Admission(limit=100, ceiling=200, max_in_flight=2)
    release = asyncio.Event()

    async def slow(_: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(text="ok")

    def api() -> web.Request:
        return make_mocked_request(
            "POST", "/", headers={"X-Amz-Target": "AmazonSSM.UpdateInstanceInformation"}
        )

    busy = [asyncio.create_task(admission.middleware(api(), slow)) for _ in range(2)]
    await wait_for(lambda: admission.in_flight == 2, 5, "both slow requests admitted")
    assert (await admission.middleware(api(), _ok)).status == 400  # ThrottlingException, no waiting
    upgrade = make_mocked_request("GET", "/v1/control-channel/mi-0", headers={"Upgrade": "websocket"})
    assert (await admission.middleware(upgrade, _ok)).status == 200  # long-lived: not counted
    release.set()
    assert [(await task).status for task in busy] == [200, 200]
    assert admission.in_flight == 0
