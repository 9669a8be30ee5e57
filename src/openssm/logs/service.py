"""Wires session logging into the server: the recorder tap on the gateway and the upload shipper."""

from __future__ import annotations

from aiohttp import web

from openssm.gateway.tap import tap_registry
from openssm.logs.recorder import recorder_factory
from openssm.logs.shipper import SHIPPER_KEY, LogShipper
from openssm.services import Services


def install(app: web.Application, services: Services) -> LogShipper:
    shipper = LogShipper(services)
    services.extras[SHIPPER_KEY] = shipper
    tap_registry(services.extras).add(recorder_factory(services, shipper))

    async def start(_: web.Application) -> None:
        shipper.start()

    async def stop(_: web.Application) -> None:
        await shipper.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return shipper
