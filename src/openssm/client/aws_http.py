"""AWS JSON 1.1 calls (SSM, KMS) signed by :mod:`openssm.auth.sigv4` and sent with ``http.client``.

What a botocore client does for the same call, for the client's few operations (StartSession,
ResumeSession, TerminateSession, kms:GenerateDataKey), without importing botocore: the same
trust (``ca_bundle``/``AWS_CA_BUNDLE``, else certifi's bundle, else botocore's own), the same
proxies (``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` through ``urllib.request``, which botocore
uses too; CONNECT tunnels for https endpoints), timeouts (connect 10 s, read 30 s), standard-mode
retries (throttling and transient errors, up to 3 retries with botocore's jittered backoff), and
errors worded as botocore words them, so ``openssm start-session`` prints what it printed when
boto3 made the call.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from openssm.auth import sigv4
from openssm.auth.credentials import ClientSettings, NotServed
from openssm.errors import OpenSSMError
from openssm.protocol.versions import CLIENT_VERSION

JSON_CONTENT_TYPE: Final = "application/x-amz-json-1.1"
TARGET_PREFIXES: Final = {"ssm": "AmazonSSM.", "kms": "TrentService."}
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
        return ServiceError(str(status), http.client.responses.get(status, ""), operation, retries=retries)
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
    import importlib.util

    spec = importlib.util.find_spec("botocore")  # finds the package without importing it
    if spec is not None and spec.origin:
        bundled = os.path.join(os.path.dirname(spec.origin), "cacert.pem")
        if os.path.isfile(bundled):
            return bundled
    return None  # the system's roots


def proxy_for(url: str, environ: Mapping[str, str] | None = None) -> str | None:
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
        self.proxy = proxy_for(self.url, environ)
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
        connection, target = self._connection(headers)
        try:
            connection.request("POST", target, body=body, headers=headers)
            assert connection.sock is not None
            connection.sock.settimeout(READ_TIMEOUT)
            response = connection.getresponse()
            answer = response.read(MAX_RESPONSE_BYTES + 1)
            if len(answer) > MAX_RESPONSE_BYTES:
                raise ApiError(f"the {operation} answer is larger than {MAX_RESPONSE_BYTES} bytes")
            return response.status, answer
        except ssl.SSLError as exc:
            raise ConnectionFailed(f"SSL validation failed for {self.url} {exc}") from exc
        except TimeoutError as exc:
            phase = "Read" if connection.sock is not None else "Connect"
            raise ConnectionFailed(f'{phase} timeout on endpoint URL: "{self.url}"') from exc
        except (http.client.RemoteDisconnected, http.client.IncompleteRead, ConnectionResetError) as exc:
            raise ConnectionFailed(
                f'Connection was closed before we received a valid response from endpoint URL: "{self.url}".'
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            if self.proxy is not None and connection.sock is None:
                raise ConnectionFailed(f'Failed to connect to proxy URL: "{self.proxy}"') from exc
            raise ConnectionFailed(f'Could not connect to the endpoint URL: "{self.url}"') from exc
        finally:
            connection.close()

    def _connection(self, headers: dict[str, str]) -> tuple[http.client.HTTPConnection, str]:
        """A connection (not yet open) and the request target to send on it."""
        if self.proxy is None:
            if self._secure:
                secure = http.client.HTTPSConnection(
                    self._host, self._port, timeout=CONNECT_TIMEOUT, context=self._context()
                )
                return secure, self._path
            return http.client.HTTPConnection(self._host, self._port, timeout=CONNECT_TIMEOUT), self._path
        proxy = urlsplit(self.proxy)
        proxy_port = proxy.port or 80
        if self._secure:  # a CONNECT tunnel, then TLS with the endpoint inside it
            tunnel = http.client.HTTPSConnection(
                proxy.hostname or "", proxy_port, timeout=CONNECT_TIMEOUT, context=self._context()
            )
            tunnel.set_tunnel(self._host, self._port, headers=_proxy_authorization(self.proxy))
            return tunnel, self._path
        headers.update(_proxy_authorization(self.proxy))  # plain http: the proxy forwards the request
        forward = http.client.HTTPConnection(proxy.hostname or "", proxy_port, timeout=CONNECT_TIMEOUT)
        return forward, self.url
