"""The server process: open the shared services, serve the composed application, close them again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from openssm.bus.factory import make_bus
from openssm.server.bootstrap import bootstrap, usage_text
from openssm.server.composition import compose
from openssm.services import ServerConfig, Services
from openssm.store.db import database_url_for, make_engine, migrate
from openssm.store.secrets import SecretCipher
from openssm.transport import runtime

log = logging.getLogger(__name__)


class _MalformedHttpWithoutTraceback(logging.Filter):
    """aiohttp logs every unparseable request (oversized headers, bad Content-Length, garbage) at
    ERROR with a traceback; the client already got its 400, so one line without the traceback is
    enough, and garbage from the network cannot fill the log with stack traces."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = f"{record.msg}: %s"
            record.args = (*(record.args if isinstance(record.args, tuple) else ()), exc)
            record.exc_info = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_HTTP_LOG_FILTER = _MalformedHttpWithoutTraceback()


async def create_services(config: ServerConfig) -> Services:
    """Open the database (migrating it), the master key and the bus; bootstrap the account."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    config.data_dir.chmod(0o700)  # database, key and credentials: for the server's user only
    cipher = SecretCipher.for_data_dir(config.data_dir)
    engine = make_engine(config.database_url or database_url_for(config.data_dir))
    await migrate(engine)
    services = Services(config=config, engine=engine, bus=make_bus(config.redis_url), cipher=cipher)
    if await bootstrap(services):
        print(usage_text(config.data_dir, config.public_url), flush=True)
    return services


async def close_services(services: Services) -> None:
    await services.bus.close()
    await services.engine.dispose()


def _ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    if config.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(config.tls_cert), str(config.tls_key) if config.tls_key else None)
    return context


async def serve(config: ServerConfig, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM), then shut down gracefully."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not main thread
            loop.add_signal_handler(sig, stop.set)
    logging.getLogger("aiohttp.server").addFilter(_HTTP_LOG_FILTER)  # once: filters are a set
    services = await create_services(config)
    runner = web.AppRunner(compose(services).app, handle_signals=False, access_log=None, shutdown_timeout=5)
    await runner.setup()
    try:
        site = web.TCPSite(
            runner,
            config.listen_host,
            config.listen_port,
            ssl_context=_ssl_context(config),
        )
        await site.start()
        log.info(
            "OpenSSM listening on %s:%s (public URL %s)",
            config.listen_host,
            config.listen_port,
            config.public_url,
        )
        print(f"OpenSSM server listening on {config.listen_host}:{config.listen_port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        await close_services(services)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)


def run(config: ServerConfig) -> None:
    runtime.run(serve(config))
