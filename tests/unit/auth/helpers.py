"""Shared pieces of the SigV4 tests: dummy credentials, botocore as the signing oracle, strategies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from urllib.parse import quote

from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import strategies as st

from openssm.auth.sigv4 import HttpRequest

ACCESS_KEY_ID = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "tempSessionTokenEXAMPLE/0123456789+abcdefghijklmnopqrstuvwxyz=="
REGION = "us-east-1"
ENDPOINT = "https://ssm.example.test:8443"


def parse_amz_date(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)


def botocore_signed(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    service: str = "ssm",
    token: str | None = None,
    payload_signing: bool = True,
) -> AWSRequest:
    """The request as botocore's SigV4Auth signs it (the oracle our signer must agree with)."""
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    if not payload_signing:
        request.context["payload_signing_enabled"] = False
    SigV4Auth(Credentials(ACCESS_KEY_ID, SECRET_KEY, token), service, REGION).add_auth(request)
    return request


def botocore_presigned(
    method: str, url: str, *, expires: int, service: str = "ssmmessages", token: str | None = None
) -> str:
    request = AWSRequest(method=method, url=url)
    SigV4QueryAuth(Credentials(ACCESS_KEY_ID, SECRET_KEY, token), service, REGION, expires=expires).add_auth(
        request
    )
    return str(request.url)


def received(request: AWSRequest, host: str) -> HttpRequest:
    """What our server would see for a botocore request sent to ``host``."""
    headers = [("Host", host), *((name, str(value)) for name, value in request.headers.items())]
    body = request.body or b""
    return HttpRequest.from_url(
        request.method, request.url, headers, body if isinstance(body, bytes) else body.encode()
    )


# ---------------------------------------------------------------------------------------- strategies

methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
_segment_text = st.text(
    alphabet=st.one_of(
        st.sampled_from("abcXYZ019-_.~ !$&'()*+,;=:@%/?#[]\"<>"),
        st.characters(min_codepoint=0xA0, max_codepoint=0x2FFF, exclude_categories=["Cs"]),
    ),
    max_size=12,
)
# Raw sub-delimiters some clients leave unencoded in paths (Go's EscapedPath does).
_path_safe = st.sampled_from(["", "!$&'()*+,;=:@", "~"])


@st.composite
def wire_paths(draw: st.DrawFn) -> str:
    """Percent-encoded request paths with special characters, dot segments and empty segments."""
    segments = draw(st.lists(st.one_of(_segment_text, st.sampled_from([".", "..", ""])), max_size=6))
    safe = draw(_path_safe)
    path = "/" + "/".join(quote(segment, safe=safe) for segment in segments)
    return path


def _rfc3986(text: str) -> str:
    return quote(text, safe="-_.~")


@st.composite
def normalized_queries(draw: st.DrawFn) -> str:
    """Query strings already in RFC 3986 form (botocore signs such queries as AWS canonicalises them)."""
    pairs = draw(st.lists(st.tuples(_segment_text, _segment_text), max_size=5))
    repeated = draw(st.booleans())
    if repeated and pairs:
        pairs.append((pairs[0][0], pairs[0][1] + "x"))
    return "&".join(f"{_rfc3986(key)}={_rfc3986(value)}" for key, value in pairs)


# Raw query text as clients may write it: unencoded spaces, '+', lowercase escapes, bare keys.
raw_queries = st.lists(
    st.tuples(
        st.text(alphabet="ab~+ %7e2F!*'", min_size=1, max_size=6),
        st.one_of(st.none(), st.text(alphabet="ab~+ %7e2F!*'=/é", max_size=6)),
    ),
    max_size=5,
).map(lambda pairs: "&".join(key if value is None else f"{key}={value}" for key, value in pairs))

header_values = st.text(alphabet=st.sampled_from("abcXYZ019-_.;:,/=+ \t\"'()"), max_size=20)


@st.composite
def extra_headers(draw: st.DrawFn) -> dict[str, str]:
    names = draw(st.lists(st.text(alphabet="abcdefghij-", min_size=1, max_size=8), max_size=4, unique=True))
    return {f"X-Test-{name}": draw(header_values) for name in names}
