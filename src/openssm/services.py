"""Server configuration and the shared services handed to every server-side component."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib

from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.bus.base import Bus
from openssm.clock import SYSTEM_CLOCK, Clock
from openssm.oidc.settings import WebIdentitySettings
from openssm.ops.metrics import Metrics
from openssm.store.authz_generation import AuthzCaches
from openssm.store.db import PoolSettings
from openssm.store.instances import PingBuffer
from openssm.store.secrets import SecretCipher


@dataclasses.dataclass(frozen=True, slots=True)
class AccessSettings:
    """Just-in-time access (``openssm.api.access``): the webhook told of each request and decision,
    and how long the expiry and webhook tasks may sleep when nothing wakes them."""

    webhook_url: str | None = None
    webhook_secret: bytes | None = dataclasses.field(default=None, repr=False)  # HMAC-SHA256 key
    webhook_retry_seconds: float = 2.0  # first retry of a failed delivery; doubles up to the maximum
    webhook_retry_max_seconds: float = 300.0
    poll_seconds: float = 30.0  # the tasks look anyway this often (a wake-up on the bus may be lost)


@dataclasses.dataclass(frozen=True, slots=True)
class ServerConfig:
    data_dir: pathlib.Path
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    public_url: str = "http://127.0.0.1:8080"  # what StreamUrls and agent endpoints point at
    region: str = "us-east-1"
    account_id: str = "000000000000"
    node_id: str = "node-1"
    database_url: str | None = None  # default: SQLite in data_dir
    database_pool: PoolSettings = dataclasses.field(
        default_factory=PoolSettings
    )  # PostgreSQL's connections and the wait for one
    redis_url: str | None = None  # scale-out bus
    tls_cert: pathlib.Path | None = None
    tls_key: pathlib.Path | None = None
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-For / -Proto we believe
    metrics_listen: tuple[str, int] | None = None  # (host, port) of the Prometheus listener, if any
    clock_skew_seconds: int = 300
    token_ttl_seconds: int = 60
    # Test/ops overrides of the preferences document (seconds); None = use preferences.
    idle_timeout_override: float | None = None
    max_duration_override: float | None = None
    # How long a session whose ends are away (a client that dropped, a server restart) is kept for them.
    resume_window_seconds: float = 120.0
    # Session logging (openssm.logs). Sink credentials and region come from the normal AWS chain
    # (env, shared config); the endpoints point at any S3-/CloudWatch-Logs-compatible service.
    record_sessions: bool = True  # server-side recording of every session (local files, then sinks)
    record_input: bool = False  # also record keystrokes in the asciicast ("i" events)
    s3_endpoint_url: str | None = None
    logs_endpoint_url: str | None = None
    sink_region: str | None = None  # default: the server's region
    log_upload_retry_seconds: float = 2.0  # first retry delay; doubles up to the maximum
    log_upload_retry_max_seconds: float = 300.0
    cloudwatch_stream_interval: float = 1.0  # how often a running session's lines are shipped
    # The tamper-evident audit trail (openssm.logs.integrity): the Ed25519 key signing its digests,
    # outside data_dir (None: no digests, as in-process test servers), and how often one is written.
    audit_signing_key: pathlib.Path | None = None
    audit_digest_seconds: float = 60.0
    # OpenID Connect: the CA bundle for identity providers, the console's "Sign in with …" (--oidc-…).
    web_identity: WebIdentitySettings = dataclasses.field(default_factory=WebIdentitySettings)
    access: AccessSettings = dataclasses.field(default_factory=AccessSettings)  # just-in-time access
    # Per-principal API rate limits (openssm.api.rate_limit): calls a second and burst per
    # (principal, action family); None: no limit.
    api_rate_limit: float | None = None
    api_rate_burst: float | None = None  # default: twice the rate, at least 1

    @property
    def secure(self) -> bool:
        return self.tls_cert is not None


@dataclasses.dataclass(slots=True)
class Services:
    """What every server-side component shares; opened once by ``openssm.server.process``. Components that need one another (the gateway node and its extensions,
    say) are wired by ``openssm.server.composition``, by constructor arguments, not through this record."""

    config: ServerConfig
    engine: AsyncEngine
    bus: Bus
    cipher: SecretCipher  # the master key: secrets at rest
    clock: Clock = SYSTEM_CLOCK  # the one clock of the server's components (tests inject a ManualClock)
    # Set when the server starts to shut down, before the gateway ends its sessions: long polls
    # (the agent's GetMessages) answer at once instead of holding the shutdown up.
    stopping: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    metrics: Metrics = dataclasses.field(default_factory=Metrics)  # this node's Prometheus figures
    # UpdateInstanceInformation's steady heartbeats, written in batches (openssm.store.instances)
    pings: PingBuffer = dataclasses.field(default_factory=PingBuffer)
    # Credentials, principals and policies as last read, valid while the authorisation generation
    # (openssm.store.authz_generation) stays the same: a steady request reads no IAM row
    authz: AuthzCaches = dataclasses.field(default_factory=AuthzCaches)

    async def authz_generation(self) -> int:
        """The authorisation generation to check :attr:`authz` entries against (and to stamp new
        ones with: ask before reading what they are made of)."""
        return await self.authz.generation.current(self.engine, self.clock.monotonic())
