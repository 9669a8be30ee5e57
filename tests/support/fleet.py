"""Simulated agents: many nodes in one asyncio process, speaking exactly the agent's wire protocol.

Each :class:`SimAgent` does what ``openssm agent`` (and amazon-ssm-agent) does, call for call:

1. ``RegisterManagedInstance`` (unsigned) with an activation's id and code, a fingerprint and an RSA
   public key (``RegistrationLimit`` is at most 1,000 per activation, so a fleet uses several);
2. ``RequestManagedInstanceRoleToken`` signed with the registration key (SigV4 with RSA);
3. a short, then a full ``UpdateInstanceInformation`` (SigV4 with the role credentials), then the
   full one every heartbeat (5 minutes on the real agent);
4. MGS ``CreateControlChannel`` and the control-channel WebSocket with its opening message, pinged
   every 54 s, reconnecting with jittered backoff and moving to another server node (the node list
   is shuffled per agent, so a dead node's agents spread over the others);
5. on ``interactive_shell``: ``CreateDataChannel``, the data-channel WebSocket, ``Connected``, a
   prompt, then every input byte echoed back in order (acks end to end, as a shell on a PTY would).

A ``ThrottlingException`` (or HTTP 429/503) answer is honoured with exponential backoff and full
jitter, as AWS SDKs do. The simulator shares only client-side codecs with the product (frames,
stream sequencing, SigV4, the agent's request builders), never the server code it measures.

RSA keys come from a small pool: generating 2,048-bit keys costs ~50 ms each and is the node's
work, not the server's; the server sees one key per registration either way.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import json
import random
import resource
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from openssm.agent.credentials import rsa_signed_headers
from openssm.agent.mgs import MgsClient, MgsError
from openssm.agent.platform_info import short_instance_information
from openssm.agent.session_request import BadSessionRequest, parse_session_request
from openssm.agent.signing import StaticCredentials, host_header, sign
from openssm.agent.ssm_api import USER_AGENT, SsmApiError, api_url, json_answer, json_request_headers
from openssm.auth.credentials_file import Credentials
from openssm.protocol.channel import StreamEndpoint
from openssm.protocol.frames import (
    MAX_FRAME_SIZE,
    FrameError,
    MessageType,
    PayloadType,
    decode,
    go_json,
)
from openssm.protocol.messages import (
    AgentDataOpen,
    AgentSessionState,
    AgentTaskComplete,
    ClientOpen,
    ControlOpen,
    SessionState,
)
from openssm.transport.http_exchange import HttpClient
from openssm.transport.websocket_connection import ClientWebSocket, DialError, WsMessageType

REAL_HEARTBEAT_SECONDS: Final = 300.0  # UpdateInstanceInformation, as amazon-ssm-agent
REAL_PING_SECONDS: Final = 54.0  # control-channel WebSocket pings
MIN_PING_SECONDS: Final = 20.0
MAX_REGISTRATIONS_PER_ACTIVATION: Final = 1000  # AWS's RegistrationLimit maximum
PROMPT: Final = b"sim$ "
THROTTLED_CODES: Final = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException"})


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (a fleet of sockets in one process); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def key_pool(size: int = 4) -> list[tuple[bytes, str]]:
    """(PKCS#8 DER private key, base64 DER public key) pairs."""
    pool = []
    for _ in range(size):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        der = key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pool.append((der, base64.b64encode(public).decode("ascii")))
    return pool


@dataclasses.dataclass
class FleetStats:
    """What the fleet saw, for the bench's table and the tests' assertions."""

    registered: int = 0
    control_open: int = 0  # control channels open right now
    throttled: int = 0  # ThrottlingException (or 429/503) answers, each backed off from
    server_errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    refusals: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    heartbeats: int = 0
    unreachable: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    sessions: int = 0


class Throttled(Exception):
    """The service asked us to slow down."""


class Backoff:
    """Exponential backoff with full jitter (AWS SDKs' "full jitter")."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self.attempt = 0

    def next(self) -> float:
        ceiling = min(self.maximum, self.initial * (2**self.attempt))
        self.attempt += 1
        return random.uniform(ceiling / 4, ceiling)

    def reset(self) -> None:
        self.attempt = 0


class SimAgent:
    def __init__(
        self,
        fleet: Fleet,
        index: int,
        endpoints: Sequence[str],
        activation: tuple[str, str],
        key: tuple[bytes, str],
    ) -> None:
        self.fleet = fleet
        self.index = index
        self.endpoints = list(endpoints)
        random.shuffle(self.endpoints)  # a dead node's agents spread over the others
        self._endpoint_index = 0
        self.activation = activation
        self.key_der, self.public_key = key
        self.fingerprint = str(uuid.uuid4())
        self.instance_id = ""
        self.credentials: Credentials | None = None
        self.online = asyncio.Event()
        self.control_node = ""  # the endpoint its control channel is on now
        self.online_at = 0.0  # time.monotonic() when its control channel last opened
        self.ws: ClientWebSocket | None = None
        self.sessions: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._endpoint_index]

    def fail_over(self, failed: str) -> None:
        if len(self.endpoints) > 1 and failed == self.endpoint:
            self._endpoint_index = (self._endpoint_index + 1) % len(self.endpoints)

    # -- the SSM API -----------------------------------------------------------------------------

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        stats = self.fleet.stats
        try:
            async with self.fleet.http.post(url, data=body, headers=headers) as response:
                raw = await response.read()
                return json_answer(response.status, raw, response.headers.get("x-amzn-ErrorType"))
        except SsmApiError as exc:
            if exc.code in THROTTLED_CODES or exc.status in {429, 503}:
                stats.throttled += 1
                raise Throttled(exc.code) from exc
            if exc.status >= 500:
                stats.server_errors[f"{exc.status} {exc.code}: {exc.message[:80]}"] += 1
            else:
                stats.refusals[exc.code] += 1
            raise

    async def _with_backoff(self, call: Any, *args: Any) -> Any:
        """Retry ``call`` through throttling and unreachable nodes until it answers."""
        backoff = Backoff(self.fleet.retry_initial, self.fleet.retry_max)
        while True:
            endpoint = self.endpoint
            try:
                return await call(*args)
            except Throttled:
                pass
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.fleet.stats.unreachable[type(exc).__name__] += 1
                self.fail_over(endpoint)
            await asyncio.sleep(backoff.next())

    async def register(self) -> None:
        async def once() -> None:
            activation_id, code = self.activation
            body = go_json(
                {
                    "ActivationCode": code,
                    "ActivationId": activation_id,
                    "Fingerprint": self.fingerprint,
                    "PublicKey": self.public_key,
                    "PublicKeyType": "Rsa",
                }
            )
            url = api_url(self.endpoint)
            headers = {
                "Host": host_header(url),
                **json_request_headers("RegisterManagedInstance"),
                "User-Agent": USER_AGENT,
            }
            answer = await self._post(url, body, headers)
            self.instance_id = str(answer["InstanceId"])

        await self._with_backoff(once)
        self.fleet.stats.registered += 1

    async def _role_token(self) -> None:
        url = api_url(self.endpoint)
        body = go_json({"Fingerprint": self.fingerprint})
        headers = rsa_signed_headers(
            url, "RequestManagedInstanceRoleToken", body, self.instance_id, self.key_der, self.fleet.region
        )
        answer = await self._post(url, body, headers)
        self.credentials = Credentials(
            str(answer["AccessKeyId"]), str(answer["SecretAccessKey"]), str(answer["SessionToken"])
        )

    async def _call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        assert self.credentials is not None
        url = api_url(self.endpoint)
        body = go_json(request)
        headers = {**json_request_headers(operation), "Content-Length": str(len(body))}
        signed = sign(
            "POST",
            url,
            headers,
            body,
            credentials=self.credentials,
            region=self.fleet.region,
            service="ssm",
            signed=["content-length", "content-type", "host", "x-amz-target"],
        )
        signed["User-Agent"] = USER_AGENT
        return await self._post(url, body, signed)

    def full_information(self) -> dict[str, Any]:
        return {
            **short_instance_information(self.instance_id),
            "AgentStatus": "Active",
            "AvailabilityZone": "",
            "AvailabilityZoneId": "",
            "ComputerName": f"sim-{self.index}.fleet.internal",
            "IPAddress": f"10.{(self.index >> 16) & 255}.{(self.index >> 8) & 255}.{self.index & 255}",
            "PlatformName": "Ubuntu",
            "PlatformVersion": "24.04",
            "SSMConnectionChannel": "ssmmessages",
        }

    # -- the life of the agent -------------------------------------------------------------------

    async def run(self) -> None:
        """Role credentials, the first health pings, then the control channel and heartbeats."""
        await self._with_backoff(self._role_token)
        await self._with_backoff(
            self._call, "UpdateInstanceInformation", short_instance_information(self.instance_id)
        )
        await self._with_backoff(self._call, "UpdateInstanceInformation", self.full_information())
        heartbeat = asyncio.create_task(self._heartbeats())
        try:
            await self._control_forever()
        finally:
            heartbeat.cancel()
            for task in list(self.sessions):
                task.cancel()

    async def _heartbeats(self) -> None:
        interval = self.fleet.heartbeat_seconds
        await asyncio.sleep(random.uniform(0, interval))  # a fleet started together spreads out
        while True:
            with contextlib.suppress(SsmApiError):
                await self._with_backoff(self._call, "UpdateInstanceInformation", self.full_information())
                self.fleet.stats.heartbeats += 1
            await asyncio.sleep(interval)

    async def _control_forever(self) -> None:
        backoff = Backoff(self.fleet.retry_initial, self.fleet.retry_max)
        while True:
            endpoint = self.endpoint
            opened = False
            try:
                opened = await self._control_once()
            except Throttled:
                pass
            except (MgsError, SsmApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.fleet.stats.unreachable[f"control: {type(exc).__name__}"] += 1
                if not opened:
                    self.fail_over(endpoint)
            finally:
                if self.online.is_set():
                    self.online.clear()
                    self.fleet.stats.control_open -= 1
                self.ws = None
            if opened:
                backoff.reset()
            await asyncio.sleep(backoff.next())

    def _mgs(self) -> MgsClient:
        """The message gateway on the node this agent talks to now (the agent's own client)."""
        assert self.credentials is not None
        return MgsClient(
            self.fleet.agent_http,
            self.endpoint,
            self.fleet.region,
            StaticCredentials(self.credentials),
            ping_seconds=self.fleet.ping_seconds,
        )

    def _gateway_refusal(self, exc: MgsError | DialError, what: str) -> Exception:
        """Throttled for 429/503 (back off), the error itself otherwise (counted when a 5xx)."""
        status = exc.status
        if status in {429, 503}:
            self.fleet.stats.throttled += 1
            return Throttled(str(status))
        if status is not None and status >= 500:
            self.fleet.stats.server_errors[f"{status} {what}"] += 1
        return exc

    async def _control_once(self) -> bool:
        mgs = self._mgs()
        try:
            token = await mgs.create_control_channel(self.instance_id)
            ws = await mgs.connect_control(self.instance_id)
        except (MgsError, DialError) as exc:
            raise self._gateway_refusal(exc, "control channel") from None
        try:
            await ws.send_str(ControlOpen(token).to_text())
            self.ws = ws
            # The node dialled, not self.endpoint now: the heartbeat task may have failed over
            # meanwhile (a bench once counted an agent Online on a node it had left, as not back).
            self.control_node = mgs.endpoint
            self.online_at = time.monotonic()
            self.online.set()
            self.fleet.stats.control_open += 1
            async for message in ws:
                if message.type == WsMessageType.BINARY:
                    self._on_control(message.data)
            return True
        finally:
            with contextlib.suppress(Exception):
                await ws.close()

    def _on_control(self, data: bytes) -> None:
        try:
            frame = decode(data)
        except FrameError:
            return
        if frame.message_type == MessageType.INTERACTIVE_SHELL:
            try:
                request = parse_session_request(frame)
            except BadSessionRequest:
                return
            task = asyncio.create_task(self._session(request.session_id, request.task_id))
            self.sessions.add(task)
            task.add_done_callback(self.sessions.discard)

    # -- a session: an echoing shell -------------------------------------------------------------

    async def _session(self, session_id: str, task_id: str) -> None:
        self.fleet.stats.sessions += 1
        mgs = self._mgs()
        try:
            token = await mgs.create_data_channel(session_id)
            ws = await mgs.connect_data(session_id)
        except (MgsError, DialError) as exc:
            raise self._gateway_refusal(exc, "data channel") from None
        stream = StreamEndpoint(MessageType.OUTPUT_STREAM_DATA, syn_on_first=True)
        try:
            await ws.send_str(AgentDataOpen(token, self.instance_id).to_text())
            await ws.send_bytes(AgentSessionState(session_id, SessionState.CONNECTED).to_frame().encode())
            await ws.send_bytes(stream.send(PayloadType.OUTPUT, PROMPT))
            async for message in ws:
                if message.type != WsMessageType.BINARY:
                    continue
                frame = decode(message.data)
                if frame.message_type == MessageType.ACKNOWLEDGE:
                    stream.on_ack(frame)
                elif frame.message_type == MessageType.INPUT_STREAM_DATA:
                    received = stream.receive(frame)
                    if received.ack is not None:
                        await ws.send_bytes(received.ack.encode())
                    for item in received.deliver:
                        if item.payload_type == PayloadType.OUTPUT and stream.can_send:
                            await ws.send_bytes(stream.send(PayloadType.OUTPUT, bytes(item.payload)))
                elif frame.message_type == MessageType.CHANNEL_CLOSED:
                    break
        finally:
            with contextlib.suppress(Exception):
                await ws.close()
        await self._task_complete(task_id)

    async def _task_complete(self, task_id: str) -> None:
        frame = AgentTaskComplete(task_id, instance_id=self.instance_id).to_frame()
        ws = self.ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError, RuntimeError):
                await ws.send_bytes(frame.encode())


class Fleet:
    """N simulated agents sharing one HTTP client (one connection per control channel)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        region: str,
        compress_time: float = 1.0,
        ssl_context: ssl.SSLContext | None = None,
        registration_concurrency: int = 64,
        retry_initial: float = 0.5,
        retry_max: float = 20.0,
    ) -> None:
        self.endpoints = list(endpoints)
        self.region = region
        self.heartbeat_seconds = REAL_HEARTBEAT_SECONDS / compress_time
        # aiohttp drops a WebSocket whose pong is later than half the ping interval: a compressed
        # schedule keeps pings at least MIN_PING_SECONDS apart, or a busy server's fleet would churn.
        self.ping_seconds = max(MIN_PING_SECONDS, REAL_PING_SECONDS / compress_time)
        self.ssl_context = ssl_context
        self.registration_concurrency = registration_concurrency
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.stats = FleetStats()
        self.agents: list[SimAgent] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        # The agents' own client for their gateway calls and channels (as openssm.agent uses it).
        self.agent_http = HttpClient(timeout=60.0, tls=ssl_context)
        self._keys = key_pool()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "use the fleet as an async context manager"
        return self._http

    async def __aenter__(self) -> Fleet:
        raise_open_files_limit()
        connector = aiohttp.TCPConnector(limit=0, ssl=self.ssl_context if self.ssl_context else True)
        self._http = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        if self._http is not None:
            await self._http.close()

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def register(self, count: int, activations: Sequence[tuple[str, str]]) -> float:
        """Register ``count`` more agents (activation (id, code) pairs of up to 1,000 each, used in
        turn); returns the seconds it took."""
        semaphore = asyncio.Semaphore(self.registration_concurrency)
        start = len(self.agents)
        new = [
            SimAgent(
                self,
                start + i,
                self.endpoints,
                activations[(start + i) // MAX_REGISTRATIONS_PER_ACTIVATION % len(activations)],
                self._keys[(start + i) % len(self._keys)],
            )
            for i in range(count)
        ]

        async def one(agent: SimAgent) -> None:
            async with semaphore:
                await agent.register()

        began = time.monotonic()
        await asyncio.gather(*(one(agent) for agent in new))
        self.agents.extend(new)
        return time.monotonic() - began

    def start(self, agents: Sequence[SimAgent] | None = None) -> None:
        """Run every (or the given) registered agent in the background."""
        for agent in self.agents if agents is None else agents:
            task = asyncio.create_task(agent.run(), name=f"sim-{agent.index}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def online_count(self) -> int:
        return sum(1 for agent in self.agents if agent.online.is_set())

    async def wait_online(self, timeout: float, agents: Sequence[SimAgent] | None = None) -> float:
        """Seconds until every (given) agent has its control channel open; TimeoutError after ``timeout``."""
        chosen = self.agents if agents is None else agents
        began = time.monotonic()
        async with asyncio.timeout(timeout):
            for agent in chosen:
                await agent.online.wait()
        return time.monotonic() - began


def activation_batches(count: int) -> list[int]:
    """RegistrationLimit of each activation a fleet of ``count`` agents needs (≤ 1,000 each)."""
    full, rest = divmod(count, MAX_REGISTRATIONS_PER_ACTIVATION)
    return [MAX_REGISTRATIONS_PER_ACTIVATION] * full + ([rest] if rest else [])


def create_activations(ssm: Any, count: int, role: str = "OpenSSMNodeRole") -> list[tuple[str, str]]:
    """Activations (id, code) for ``count`` agents, through a boto3 SSM client."""
    pairs = []
    for limit in activation_batches(count):
        answer = ssm.create_activation(IamRole=role, DefaultInstanceName="sim", RegistrationLimit=limit)
        pairs.append((answer["ActivationId"], answer["ActivationCode"]))
    return pairs


def online_from_api(ssm: Any, page_size: int = 50) -> tuple[set[str], list[float]]:
    """Instance ids the API lists as Online (every page of DescribeInstanceInformation, filtered),
    and the seconds each page took."""
    online: set[str] = set()
    timings: list[float] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {
            "MaxResults": page_size,
            "Filters": [{"Key": "PingStatus", "Values": ["Online"]}],
        }
        if token:
            kwargs["NextToken"] = token
        began = time.perf_counter()
        page = ssm.describe_instance_information(**kwargs)
        timings.append(time.perf_counter() - began)
        online.update(item["InstanceId"] for item in page["InstanceInformationList"])
        token = page.get("NextToken")
        if not token:
            return online, timings


def dump(stats: FleetStats) -> str:
    # Not dataclasses.asdict: it rebuilds a Counter from (key, count) pairs, counting the pairs.
    fields = {field.name: getattr(stats, field.name) for field in dataclasses.fields(stats)}
    return json.dumps(
        {name: dict(value) if isinstance(value, dict) else value for name, value in fields.items()}
    )


class ShellClient:
    """The smallest correct data-channel client (open frame, acks, in-order delivery) for a session
    on a simulated agent: what arrives is what the agent's echoing shell sent."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.stream = StreamEndpoint(MessageType.INPUT_STREAM_DATA, syn_on_first=False)
        self.output = bytearray()
        # Called with each delivered output payload, in order, as it arrives (echo timing).
        self.on_output: Callable[[bytes], None] | None = None
        self._arrived = asyncio.Event()
        self._pump = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, http: aiohttp.ClientSession, started: dict[str, Any]) -> ShellClient:
        """Dial StartSession's ``StreamUrl`` and send the open frame with its token."""
        ws = await http.ws_connect(started["StreamUrl"], max_msg_size=MAX_FRAME_SIZE)
        await ws.send_str(ClientOpen(started["TokenValue"]).to_text())
        return cls(ws)

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.BINARY:
                continue
            frame = decode(message.data)
            if frame.message_type == MessageType.ACKNOWLEDGE:
                self.stream.on_ack(frame)
            elif frame.message_type == MessageType.OUTPUT_STREAM_DATA:
                received = self.stream.receive(frame)
                if received.ack is not None:
                    await self.ws.send_bytes(received.ack.encode())
                for item in received.deliver:
                    if item.payload_type == PayloadType.OUTPUT:
                        self.output += item.payload
                        if self.on_output is not None:
                            self.on_output(bytes(item.payload))
                        self._arrived.set()
            elif frame.message_type == MessageType.CHANNEL_CLOSED:
                break
        self._arrived.set()

    async def expect(self, needle: bytes, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while needle not in self.output:
                if self._pump.done():
                    raise ConnectionError(f"data channel closed before {needle!r}: {bytes(self.output)!r}")
                self._arrived.clear()
                await self._arrived.wait()

    async def send(self, data: bytes, payload_type: PayloadType = PayloadType.OUTPUT) -> None:
        await self.ws.send_bytes(self.stream.send(payload_type, data))

    async def wait_closed(self, timeout: float = 10.0) -> None:
        """Until the service closes the channel (the session ended) or the connection ends."""
        await asyncio.wait_for(asyncio.shield(self._pump), timeout)

    async def close(self) -> None:
        await self.ws.close()
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._pump
