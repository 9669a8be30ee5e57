"""Admission control: the throttling answers' shapes and who is refused at which fill level."""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

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
