"""A refused WebSocket upgrade never carries the agent's signed request headers into a log."""

from __future__ import annotations

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from openssm.agent.mgs import without_request_headers

SECRET_HEADERS = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20260101/us-east-1/ssmmessages/aws4_request, "
    "SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=" + "ab" * 32,
    "X-Amz-Security-Token": "FwoGZXIvYXdzEXAMPLESESSIONTOKEN",
}


def test_refusal_keeps_type_status_and_message_but_not_the_request_headers() -> None:
    url = URL("wss://gateway.example.com/v1/data-channel/s-1?role=publish_subscribe")
    request_info = aiohttp.RequestInfo(url, "GET", CIMultiDictProxy(CIMultiDict(SECRET_HEADERS)), url)
    refused = aiohttp.WSServerHandshakeError(request_info, (), status=403, message="Invalid response status")
    assert "X-Amz-Security-Token" in repr(refused)  # what the scrub is for

    scrubbed = without_request_headers(refused)

    assert type(scrubbed) is aiohttp.WSServerHandshakeError
    assert (scrubbed.status, scrubbed.message, scrubbed.request_info.url) == (403, refused.message, url)
    for text in (repr(scrubbed), str(scrubbed)):
        assert "Signature=" not in text and "SESSIONTOKEN" not in text and "Authorization" not in text
