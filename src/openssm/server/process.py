"""The server process: open the shared services, serve the composed application, close them again."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import ssl
from typing import Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from openssm.bus.factory import make_bus
from openssm.server.admission import admission_for, raise_open_files_limit
from openssm.server.bootstrap import bootstrap, console_text, usage_text
from openssm.server.composition import compose
from openssm.server.datadir import DataDirLock
from openssm.server.metrics import start_metrics_listener
from openssm.services import ServerConfig, Services
from openssm.store import trace
from openssm.store.db import database_url_for, make_engine, migrate
from openssm.store.secrets import SecretCipher
from openssm.transport import runtime, tls_listener

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0


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


def uses_embedded_database(config: ServerConfig) -> bool:
    return config.database_url is None or config.database_url.startswith("sqlite")


async def create_services(config: ServerConfig) -> Services:
    """Open the database (migrating it), the master key and the bus; bootstrap the account."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    config.data_dir.chmod(0o700)  # database, key and credentials: for the server's user only
    cipher = SecretCipher.for_data_dir(config.data_dir)
    engine = make_engine(config.database_url or database_url_for(config.data_dir), config.database_pool)
    await migrate(engine)
    if os.environ.get(trace.TRACE_ENV):
        trace.install(engine)
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
    _load_certificate(context, config)
    return context


def _load_certificate(context: ssl.SSLContext, config: ServerConfig) -> None:
    assert config.tls_cert is not None
    context.load_cert_chain(str(config.tls_cert), str(config.tls_key) if config.tls_key else None)


def reload_certificate(context: ssl.SSLContext | None, config: ServerConfig) -> bool:
    """SIGHUP: load the certificate and key files again into the listening context. Connections
    already open keep the certificate they were made with (sessions are not dropped); new ones get
    the new certificate. Files that do not load (a half-written renewal) leave the old one in use."""
    if context is None:
        log.info("SIGHUP: no TLS certificate to reload (serving plain HTTP)")
        return False
    try:
        _load_certificate(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), config)  # check first
        _load_certificate(context, config)
    except (OSError, ssl.SSLError) as exc:
        log.error("SIGHUP: kept the TLS certificate in use: cannot load %s: %s", config.tls_cert, exc)
        return False
    log.info("SIGHUP: reloaded the TLS certificate %s and its key", config.tls_cert)
    return True


async def serve(
    config: ServerConfig, stop: asyncio.Event | None = None, *, whole_process: bool = False
) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM), then shut down gracefully. ``whole_process``:
    the server is all the process runs (``openssm server``), so once started it tunes the process's
    garbage collector for itself (:func:`tune_collector`)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not main thread
            loop.add_signal_handler(sig, stop.set)
    logging.getLogger("aiohttp.server").addFilter(_HTTP_LOG_FILTER)  # once: filters are a set
    async with contextlib.AsyncExitStack() as stack:
        if uses_embedded_database(config):
            config.data_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(DataDirLock(config.data_dir))  # one server per embedded database
        admission = admission_for(raise_open_files_limit())  # before the database opens its files
        services = await create_services(config)
        stack.push_async_callback(close_services, services)
        app = compose(services).app
        app.middlewares.insert(0, admission.middleware)  # first: a refusal costs no other work
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=5,
            # An agent calls the API every few minutes: an idle keep-alive connection would hold a
            # descriptor (a fleet's worth of them) for nothing; its next call opens a new one.
            keepalive_timeout=KEEPALIVE_SECONDS,
        )
        await runner.setup()
        server = runner.server
        assert server is not None
        admission.count_with(lambda: len(server.connections))
        stack.push_async_callback(runner.cleanup)
        ssl_context = _ssl_context(config)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not main thread
            loop.add_signal_handler(signal.SIGHUP, reload_certificate, ssl_context, config)
            stack.callback(loop.remove_signal_handler, signal.SIGHUP)
        # TLS through tls_listener: one read buffer for every connection, not the event loop's 256 KiB
        # each (an idle agent's control channel costs 33 KiB there, 55 KiB on uvloop's TLS).
        site_type = web.TCPSite if ssl_context is None else tls_listener.SharedBufferTLSSite
        site = site_type(runner, config.listen_host, config.listen_port, ssl_context=ssl_context)
        await site.start()
        if config.metrics_listen is not None:
            host, port = config.metrics_listen
            metrics_runner = await start_metrics_listener(services.metrics, host, port)
            stack.push_async_callback(metrics_runner.cleanup)
            log.info("Prometheus metrics at http://%s:%s/metrics", host, port)
        log.info(
            "OpenSSM listening on %s:%s (public URL %s)",
            config.listen_host,
            config.listen_port,
            config.public_url,
        )
        print(f"OpenSSM server listening on {config.listen_host}:{config.listen_port}", flush=True)
        print(console_text(config.data_dir, config.public_url), flush=True)
        if whole_process:
            tune_collector()
        trimmer = asyncio.create_task(_release_free_memory(), name="release-free-memory")
        stack.callback(trimmer.cancel)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.remove_signal_handler(sig)


# Python's cyclic collector looks at its youngest objects after this many more allocations than
# deallocations (700 by default).
GC_YOUNG_THRESHOLD: Final = 50_000


def tune_collector() -> None:
    """Fit the cyclic garbage collector to a server holding a fleet's connections. A request awaiting
    the database spans many young collections at the default threshold, so its short-lived objects
    were promoted to the oldest generation, which Python collects whole once a quarter of it is
    new: with 3,000 idle agents a full collection every 15-20 s, each walking every object of every
    connection (0.7-2.7 s on the shared 2-core VM; about 7 % of the process's time, and the pauses
    any call that met one waited for). At 50,000 those objects die by their reference counts before
    a young collection sees them (cyclic garbage waits a little longer for its collection, a few MB
    at most). What start-up made (modules, classes, the composed application, caches of SQL) lives
    as long as the process: frozen, so no full collection walks it again."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


# How often the server hands the C heap's free pages back to the kernel (runtime.release_free_memory).
TRIM_SECONDS: Final = 10.0


async def _release_free_memory() -> None:
    """Every :data:`TRIM_SECONDS`, give the kernel back the pages the C heap holds free. The tuned
    allocator (``transport.runtime``) keeps up to 64 MiB of free heap per arena so a relay's buffers
    do not fault in again; a fleet's registrations and API calls leave that much behind in the main
    heap and in each database thread's arena, which RSS would count against the idle agents
    (a few milliseconds each time; a busy relay refaults its buffers once a period at most)."""
    while True:
        await asyncio.sleep(TRIM_SECONDS)
        runtime.release_free_memory()


def run(config: ServerConfig) -> None:
    runtime.run(serve(config, whole_process=True))
