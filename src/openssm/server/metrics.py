"""``openssm server --metrics-listen HOST:PORT``: the node's Prometheus metrics on a listener of
their own (off unless given), at ``/metrics`` in the text exposition format.

A listener of its own, because metrics are for the operator's monitoring network, not for
whoever reaches the API port: bind it to an address only Prometheus reaches. It needs no
authentication and serves nothing else. The figures are in ``openssm.ops.metrics``.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from openssm.ops.metrics import CONTENT_TYPE, Metrics

METRICS_PATH: Final = "/metrics"


def metrics_app(metrics: Metrics) -> web.Application:
    async def scrape(_: web.Request) -> web.Response:
        response = web.Response(body=await metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    app = web.Application()
    app.router.add_get(METRICS_PATH, scrape)
    return app


async def start_metrics_listener(metrics: Metrics, host: str, port: int) -> web.AppRunner:
    """Serve ``metrics`` on ``host:port`` until the returned runner is cleaned up."""
    runner = web.AppRunner(metrics_app(metrics), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
