"""AWS JSON 1.1 calls (SSM, KMS) signed by :mod:`openssm.auth.sigv4`, over a socket of their own.

What a botocore client does for the same call, for the client's few operations (StartSession,
ResumeSession, TerminateSession, kms:GenerateDataKey), without importing botocore: the same
trust (``ca_bundle``/``AWS_CA_BUNDLE``, else certifi's bundle, else botocore's own), the same
proxies (``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` through ``urllib.request``, which botocore
uses too; CONNECT tunnels for https endpoints), timeouts (connect 10 s, read 30 s), standard-mode
retries (throttling and transient errors, up to 3 retries with botocore's jittered backoff), and
errors worded as botocore words them, so ``openssm start-session`` prints what it printed when
boto3 made the call.

One call per connection (``Connection: close``), its request and answer framed by
:mod:`openssm.protocol.http1` (which the data channel's upgrade and proxy tunnel use too) rather
than by ``http.client``: that module imports the ``email`` package, about 12 ms on the way to
StartSession, for the one POST this client sends per operation.
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from openssm.auth import sigv4
from openssm.auth.credentials import ClientSettings, NotServed
from openssm.errors import OpenSSMError
from openssm.protocol import http1
from openssm.protocol.versions import CLIENT_VERSION

JSON_CONTENT_TYPE: Final = "application/x-amz-json-1.1"
TARGET_PREFIXES: Final = {"ssm": "AmazonSSM.", "kms": "TrentService.", "openssm": "OpenSSM_20261201."}
USER_AGENT: Final = f"openssm-session-manager-plugin/{CLIENT_VERSION}"
CONNECT_TIMEOUT: Final = 10.0
READ_TIMEOUT: Final = 30.0
MAX_RETRIES: Final = 3  # as the client's boto3 config: retries={"max_attempts": 3}
MAX_RESPONSE_BYTES: Final = 1 << 20
MAX_BACKOFF: Final = 20.0
# botocore's standard retry mode (botocore/retries/standard.py).
THROTTLING_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
TRANSIENT_CODES: Final = frozenset({"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"})
TRANSIENT_STATUSES: Final = frozenset({500, 502, 503, 504})


class ApiError(OpenSSMError):
    """A call that failed; ``str()`` is botocore's wording of the same failure."""

    def __init__(self, text: str, *, code: str = "", operation: str = "") -> None:
        super().__init__(text)
        self.code = code  # the service's error code; "" for failures before an answer
        self.operation = operation


class ServiceError(ApiError):
    """The service answered with an error (botocore: ``ClientError``)."""

    def __init__(self, code: str, message: str, operation: str, *, retries: int | None = None) -> None:
        retry_info = f" (reached max retries: {retries})" if retries else ""
        super().__init__(
            f"An error occurred ({code or 'Unknown'}) when calling the {operation} operation{retry_info}: "
            f"{message}",
            code=code,
            operation=operation,
        )
        self.message = message


class ConnectionFailed(ApiError):
    """No answer: refused, reset, timed out, TLS refused (botocore: its ``ConnectionError`` family)."""


def error_from_response(status: int, body: bytes, operation: str, retries: int | None = None) -> ServiceError:
    """botocore's JSON protocol error parsing (``BaseJSONParser._do_error_parse`` and the generic
    5xx case) for one error answer."""
    stripped = body.strip()
    if status >= 500 and (not stripped or stripped.startswith(b"<html>")):
        return ServiceError(str(status), _reason(status), operation, retries=retries)
    parsed: Any = {}
    if body:
        text = body.decode("utf-8", "replace")
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = {"message": text}
    if not isinstance(parsed, dict):
        parsed = {}
    message = parsed.get("message", parsed.get("Message", ""))
    code = str(parsed.get("__type", str(status)))
    code = code.split(":", 1)[0].rsplit("#", 1)[-1]
    return ServiceError(code, str(message), operation, retries=retries)


def _reason(status: int) -> str:
    """The status's reason phrase, as ``http.client.responses`` has it."""
    import http

    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _retryable(error: ApiError, status: int | None) -> float | None:
    """Backoff base scale (seconds) if botocore's standard mode would retry this, else None."""
    if isinstance(error, ConnectionFailed):
        return 0.05
    if error.code in THROTTLING_CODES or status == 429:
        return 1.0
    if error.code in TRANSIENT_CODES or status in TRANSIENT_STATUSES:
        return 0.05
    return None


# -- where to connect ---------------------------------------------------------------------------------


def ca_file(ca_bundle: str | None) -> str | None:
    """botocore's trust: the configured bundle, else certifi's, else the one botocore ships."""
    if ca_bundle:
        return ca_bundle
    try:
        import certifi
    except ImportError:
        pass
    else:
        return str(certifi.where())
    for entry in sys.path:  # botocore's own bundle, found where importing botocore would find it
        bundled = os.path.join(entry or ".", "botocore", "cacert.pem")
        if os.path.isfile(bundled):
            return bundled
    return None  # the system's roots


def botocore_proxy_for(url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy botocore would use for ``url`` (``urllib.request``'s reading of the environment)."""
    env = os.environ if environ is None else environ
    if not any(value and name.lower().endswith("_proxy") for name, value in env.items()):
        return None  # the common case, without importing urllib.request
    import urllib.request

    parts = urlsplit(url)
    try:
        if urllib.request.proxy_bypass(parts.netloc):
            return None
    except (TypeError, OSError):
        pass
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy:
        return None
    if proxy.startswith(("http:", "https:")):
        return proxy
    return f"http:{proxy}" if proxy.startswith("//") else f"http://{proxy}"


def _proxy_authorization(proxy: str) -> dict[str, str]:
    parts = urlsplit(proxy)
    if not parts.username:
        return {}
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}


# -- the client ---------------------------------------------------------------------------------------------


class JsonApiClient:
    """Signed JSON 1.1 calls to one service; blocking (call it from a thread in async code)."""

    def __init__(
        self,
        settings: ClientSettings,
        *,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.target_prefix = TARGET_PREFIXES[settings.service]
        parts = urlsplit(settings.endpoint_url)
        self._secure = parts.scheme.lower() == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._secure else 80)
        self._path = parts.path or "/"
        self.url = f"{parts.scheme}://{parts.netloc}{self._path}"
        # Sent and signed as given, so what the service checks is what was signed.
        host = parts.netloc.rpartition("@")[2]
        default_port = ":443" if self._secure else ":80"
        self._host_header = host[: -len(default_port)] if host.endswith(default_port) else host
        self.proxy = botocore_proxy_for(self.url, environ)
        if self.proxy is not None and not self.proxy.lower().startswith("http:"):
            raise NotServed(f"a proxy that is not http:// ({self.proxy})")
        self._ssl: ssl.SSLContext | None = None
        self._sleep = sleep

    def prepare(self) -> None:
        """Load the trust store now (certifi is imported on this thread, not on the caller's)."""
        if self._secure or (self.proxy is not None and self.proxy.lower().startswith("https:")):
            self._context()

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=ca_file(self.settings.ca_bundle))
        return self._ssl

    def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One operation, retried as botocore's standard mode retries it."""
        body = json.dumps(params).encode()
        attempt = 0
        while True:
            status: int | None = None
            try:
                status, answer = self._send(operation, body)
                if 200 <= status < 300:
                    return self._parse_success(answer, operation)
                error: ApiError = error_from_response(status, answer, operation)
            except ConnectionFailed as exc:
                error = exc
            scale = _retryable(error, status)
            if scale is None:
                raise error
            if attempt >= MAX_RETRIES:
                if isinstance(error, ServiceError):
                    raise ServiceError(error.code, error.message, operation, retries=attempt) from None
                raise error
            attempt += 1
            self._sleep(random.random() * min(scale * 2 ** (attempt - 1), MAX_BACKOFF))

    def _parse_success(self, answer: bytes, operation: str) -> dict[str, Any]:
        try:
            parsed = json.loads(answer) if answer.strip() else {}
        except ValueError as exc:
            raise ApiError(f"the {operation} answer is not JSON: {exc}", operation=operation) from exc
        if not isinstance(parsed, dict):
            raise ApiError(f"the {operation} answer is not a JSON object", operation=operation)
        return parsed

    def _send(self, operation: str, body: bytes) -> tuple[int, bytes]:
        """One attempt: (status, body). Raises ConnectionFailed when no answer came."""
        credentials = self.settings.credentials
        headers = {
            "Host": self._host_header,
            "Content-Type": JSON_CONTENT_TYPE,
            "X-Amz-Target": self.target_prefix + operation,
            "Content-Length": str(len(body)),
        }
        headers.update(
            sigv4.sign_hmac(
                "POST",
                self.url,
                headers,
                body,
                access_key_id=credentials.access_key_id,
                secret_key=credentials.secret_access_key,
                session_token=credentials.session_token,
                region=self.settings.region,
                service=self.settings.service,
            )
        )
        headers["User-Agent"] = USER_AGENT
        headers["Connection"] = "close"  # one call per connection: the client makes a handful
        target = self._path
        if self.proxy is not None and not self._secure:  # plain http: the proxy forwards the request
            target = self.url
            headers.update(_proxy_authorization(self.proxy))
        sock: socket.socket | None = None
        try:
            sock = self._open()
            sock.settimeout(READ_TIMEOUT)
            sock.sendall(http1.request("POST", target, headers.items(), body))
            return _read_response(sock)
        except ssl.SSLError as exc:
            raise ConnectionFailed(f"SSL validation failed for {self.url} {exc}") from exc
        except TimeoutError as exc:
            phase = "Read" if sock is not None else "Connect"
            raise ConnectionFailed(f'{phase} timeout on endpoint URL: "{self.url}"') from exc
        except (ConnectionResetError, BrokenPipeError, http1.HandshakeError) as exc:
            raise ConnectionFailed(
                f'Connection was closed before we received a valid response from endpoint URL: "{self.url}".'
            ) from exc
        except OSError as exc:
            raise ConnectionFailed(f'Could not connect to the endpoint URL: "{self.url}"') from exc
        finally:
            if sock is not None:
                sock.close()

    def _open(self) -> socket.socket:
        """A connection to the endpoint: straight, through a CONNECT tunnel, or to a forwarding proxy."""
        if self.proxy is None:
            sock = socket.create_connection((self._host, self._port), timeout=CONNECT_TIMEOUT)
        else:
            proxy = urlsplit(self.proxy)
            try:
                sock = socket.create_connection(
                    (proxy.hostname or "", proxy.port or 80), timeout=CONNECT_TIMEOUT
                )
                if self._secure:
                    _tunnel(sock, http1.authority(self._host, self._port), _proxy_authorization(self.proxy))
            except (OSError, http1.HandshakeError) as exc:
                raise ConnectionFailed(f'Failed to connect to proxy URL: "{self.proxy}"') from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._secure:
            return self._context().wrap_socket(sock, server_hostname=self._host)
        return sock


def _tunnel(sock: socket.socket, target: str, headers: Mapping[str, str]) -> None:
    """CONNECT ``target`` through the proxy at the other end of ``sock``."""
    sock.sendall(http1.connect_request(target, headers.items()))
    received = bytearray()
    while (parsed := http1.parse_response_head(received)) is None:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("the proxy closed the connection")
        received += chunk
    http1.check_connect(parsed[0])
    if len(received) > parsed[1]:
        raise http1.HandshakeError("the proxy sent data before the tunnel was used")


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of the answer on ``sock`` (informational answers skipped)."""
    received = bytearray()
    while True:
        while (parsed := http1.parse_response_head(received)) is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("closed before the response head")
            received += chunk
        head, size = parsed
        del received[:size]
        if not 100 <= head.status < 200:
            break
    reader = http1.BodyReader(head, MAX_RESPONSE_BYTES)
    reader.feed(bytes(received))
    while not reader.done:
        chunk = sock.recv(65536)
        if not chunk:
            reader.eof()
        else:
            reader.feed(chunk)
    return head.status, reader.body
