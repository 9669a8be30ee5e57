"""Calling OpenSSM's access request API (``OpenSSM_20261201.*``) as the AWS CLI would call an AWS API:
the user's AWS credentials and region from the usual places (botocore's chain: environment, shared
files, profiles), a JSON 1.1 ``POST /`` signed with SigV4 (signing name ``openssm``) by
``openssm.auth.sigv4``, AWS's error shapes read back. No AWS SDK has a model for this API, so the
request is built here, with the standard library's HTTP client."""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Final

from openssm.auth.sigv4 import sign_hmac
from openssm.errors import OpenSSMError

TARGET_PREFIX: Final = "OpenSSM_20261201"
SIGNING_NAME: Final = "openssm"
TIMEOUT_SECONDS: Final = 30.0
MAX_RESPONSE_BYTES: Final = 4 * 1024 * 1024


class AccessApiError(OpenSSMError):
    """The call failed: ``code`` is AWS's error code (or a client-side one), ``message`` says why."""

    def __init__(self, code: str, message: str, operation: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.operation = operation

    def aws_cli_text(self) -> str:
        """How the AWS CLI words a failed call."""
        if self.operation is None:
            return self.message
        return f"An error occurred ({self.code}) when calling the {self.operation} operation: {self.message}"


@dataclasses.dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_key: str = dataclasses.field(repr=False)
    session_token: str | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True)
class AccessApi:
    endpoint: str
    region: str
    credentials: Credentials
    ca_bundle: str | None = None

    @classmethod
    def configured(cls, *, profile: str | None, region: str | None, endpoint_url: str | None) -> AccessApi:
        """Credentials, region and endpoint found as the AWS CLI finds them (``--endpoint-url``, then
        ``$AWS_ENDPOINT_URL_SSM``, ``$AWS_ENDPOINT_URL`` or the profile's ``endpoint_url``: this API
        lives on the SSM endpoint)."""
        import botocore.exceptions
        import botocore.session

        try:
            session = botocore.session.Session(profile=profile or None)
            found = session.get_credentials()
            scoped = session.get_scoped_config()
        except botocore.exceptions.ProfileNotFound as exc:
            raise AccessApiError("ProfileNotFound", str(exc)) from exc
        if found is None:
            raise AccessApiError(
                "NoCredentials",
                'Unable to locate credentials. You can configure credentials by running "aws configure".',
            )
        frozen = found.get_frozen_credentials()
        chosen_region = region or session.get_config_variable("region")
        if not chosen_region:
            raise AccessApiError(
                "NoRegion",
                'You must specify a region. You can also configure your region by running "aws configure".',
            )
        endpoint = (
            endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_SSM")
            or os.environ.get("AWS_ENDPOINT_URL")
            or scoped.get("endpoint_url")
        )
        if not endpoint:
            raise AccessApiError("NoEndpoint", "OpenSSM's endpoint is not known: give --endpoint-url URL.")
        if urllib.parse.urlsplit(str(endpoint)).scheme not in ("http", "https"):
            raise AccessApiError("InvalidEndpoint", f"{endpoint} is not an http:// or https:// URL.")
        return cls(
            endpoint=str(endpoint).rstrip("/"),
            region=str(chosen_region),
            credentials=Credentials(frozen.access_key, frozen.secret_key, frozen.token),
            ca_bundle=session.get_config_variable("ca_bundle"),
        )

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """``OpenSSM_20261201.<operation>``; its result, or AccessApiError."""
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"{TARGET_PREFIX}.{operation}",
        }
        status, data = self._post(headers, json.dumps(body).encode(), SIGNING_NAME, self.region, operation)
        try:
            parsed = json.loads(data) if data.strip() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            parsed = None
        if not isinstance(parsed, dict):
            raise AccessApiError(
                "InvalidResponse", f"The server answered HTTP {status} with no JSON object.", operation
            )
        if status >= 300:
            code = str(parsed.get("__type", "")).rsplit("#", 1)[-1] or f"HTTP{status}"
            raise AccessApiError(code, str(parsed.get("message") or parsed.get("Message") or ""), operation)
        return parsed

    def caller_arn(self) -> str:
        """``sts:GetCallerIdentity``: who these credentials are (for ``--mine``)."""
        body = urllib.parse.urlencode({"Action": "GetCallerIdentity", "Version": "2011-06-15"}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        status, data = self._post(headers, body, "sts", "us-east-1", "GetCallerIdentity")
        text = data.decode("utf-8", "replace")

        def element(name: str) -> str:  # STS's answers are flat; no XML parser for a server's bytes
            found = re.search(rf"<{name}>([^<]*)</{name}>", text)
            return html.unescape(found.group(1)) if found else ""

        arn = element("Arn")
        if status >= 300 or not arn:
            raise AccessApiError(element("Code") or f"HTTP{status}", element("Message"), "GetCallerIdentity")
        return arn

    def _post(
        self, headers: dict[str, str], body: bytes, service: str, region: str, operation: str
    ) -> tuple[int, bytes]:
        url = f"{self.endpoint}/"
        headers = {**headers, "Host": urllib.parse.urlsplit(url).netloc}
        credentials = self.credentials
        headers.update(
            sign_hmac(
                "POST",
                url,
                headers,
                body,
                access_key_id=credentials.access_key_id,
                secret_key=credentials.secret_key,
                session_token=credentials.session_token,
                region=region,
                service=service,
            )
        )
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) only
        context = ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle else None
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=context) as response:  # noqa: S310
                return response.status, response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as error:
            return error.code, error.read(MAX_RESPONSE_BYTES)
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise AccessApiError(
                "EndpointConnectionError", f'Could not connect to the endpoint URL: "{url}": {reason}', None
            ) from exc
