"""Calling OpenSSM's access request API (``OpenSSM_20261201.*``) as the AWS CLI calls an AWS API.

The access API lives on the SSM endpoint, so credentials, region, endpoint and CA bundle are what an
SSM client of the same profile would use (``client.aws_settings``: the environment and the shared
files read as botocore reads them; botocore itself for the sources only it resolves: SSO,
assume-role, credential processes …). The calls are the client's own JSON 1.1 calls
(``client.aws_http.JsonApiClient``: SigV4 with the signing name ``openssm``, botocore's trust,
proxies, retries and error wording). No AWS SDK has a model for this API.

``--mine`` needs the caller's own ARN: ``sts:GetCallerIdentity``, a Query call, made here.
"""

from __future__ import annotations

import html
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Final

from openssm.auth.credentials import ClientSettings, NotServed, StaticCredentials
from openssm.auth.sigv4 import sign_hmac
from openssm.client.aws_http import ApiError, JsonApiClient, ca_file
from openssm.client.aws_settings import client_settings

SIGNING_NAME: Final = "openssm"  # client.aws_http.TARGET_PREFIXES maps it to OpenSSM_20261201.
TIMEOUT_SECONDS: Final = 30.0
MAX_RESPONSE_BYTES: Final = 1 << 20
NO_ENDPOINT: Final = "OpenSSM's endpoint is not known: give --endpoint-url URL (or set AWS_ENDPOINT_URL_SSM)."

__all__ = ["AccessApi", "ApiError"]


def _aws_own_endpoint(settings: ClientSettings) -> bool:
    """Nothing named an endpoint, so the settings fell back to AWS's own SSM endpoint."""
    return settings.endpoint_url == f"https://ssm.{settings.region}.amazonaws.com"


def _from_botocore(profile: str | None, region: str | None, endpoint_url: str | None) -> ClientSettings:
    """The same settings, resolved by botocore (for the sources ``client_settings`` leaves to it)."""
    import botocore.exceptions
    import botocore.session

    try:
        session = botocore.session.Session(profile=profile or None)
        found = session.get_credentials()
        chosen_region = region or session.get_config_variable("region")
        endpoint = endpoint_url or session.get_scoped_config().get("endpoint_url")
    except botocore.exceptions.BotoCoreError as exc:
        raise ApiError(str(exc)) from exc
    if found is None:
        raise ApiError(str(botocore.exceptions.NoCredentialsError()))
    if not chosen_region:
        raise ApiError(str(botocore.exceptions.NoRegionError()))
    frozen = found.get_frozen_credentials()
    return ClientSettings(
        service=SIGNING_NAME,
        credentials=StaticCredentials(frozen.access_key, frozen.secret_key, frozen.token, found.method),
        region=str(chosen_region),
        endpoint_url=str(endpoint or f"https://ssm.{chosen_region}.amazonaws.com"),
        ca_bundle=session.get_config_variable("ca_bundle"),
        profile=profile or "default",
    )


class AccessApi:
    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings._replace(service=SIGNING_NAME)
        self.client = JsonApiClient(self.settings)

    @classmethod
    def configured(cls, *, profile: str | None, region: str | None, endpoint_url: str | None) -> AccessApi:
        """Credentials, region and endpoint as an SSM client of the same profile finds them."""
        try:
            settings = client_settings("ssm", profile=profile, region=region, endpoint_url=endpoint_url)
        except NotServed:
            settings = _from_botocore(profile, region, endpoint_url)
        if _aws_own_endpoint(settings):
            raise ApiError(NO_ENDPOINT)
        try:
            return cls(settings)
        except NotServed as exc:  # a proxy the client's own HTTP does not speak
            raise ApiError(f"Cannot call {settings.endpoint_url}: {exc}") from exc

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """``OpenSSM_20261201.<operation>``: its answer, or ApiError worded as the AWS CLI words it."""
        return self.client.call(operation, body)

    def caller_arn(self) -> str:
        """``sts:GetCallerIdentity`` on the same endpoint: who these credentials are."""
        body = urllib.parse.urlencode({"Action": "GetCallerIdentity", "Version": "2011-06-15"}).encode()
        url = f"{self.settings.endpoint_url.rstrip('/')}/"
        headers = {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Host": urllib.parse.urlsplit(url).netloc,
        }
        credentials = self.settings.credentials
        headers.update(
            sign_hmac(
                "POST", url, headers, body, access_key_id=credentials.access_key_id,
                secret_key=credentials.secret_access_key, session_token=credentials.session_token,
                region="us-east-1", service="sts",
            )
        )  # fmt: skip
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - http(s)
        context = ssl.create_default_context(cafile=ca_file(self.settings.ca_bundle))
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS, context=context) as response:  # noqa: S310
                status, text = response.status, response.read(MAX_RESPONSE_BYTES).decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read(MAX_RESPONSE_BYTES).decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(f'Could not connect to the endpoint URL: "{url}"') from exc

        def element(name: str) -> str:  # STS's answers are flat: no XML parser for a server's bytes
            found = re.search(rf"<{name}>([^<]*)</{name}>", text)
            return html.unescape(found.group(1)) if found else ""

        arn = element("Arn")
        if status >= 300 or not arn:
            code = element("Code") or str(status)
            raise ApiError(
                f"An error occurred ({code}) when calling the GetCallerIdentity operation: {element('Message')}",
                code=code,
                operation="GetCallerIdentity",
            )
        return arn
