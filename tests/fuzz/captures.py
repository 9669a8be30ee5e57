"""Events of the AWS wire captures (``tests/captures/*.jsonl``), for the fuzz targets' seeds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.conftest import captures_dir


def events(kind: str | None = None) -> Iterator[dict[str, Any]]:
    for path in sorted(captures_dir().glob("*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                event: dict[str, Any] = json.loads(line)
                if kind is None or event.get("kind") == kind:
                    yield event


def binary_messages() -> Iterator[bytes]:
    """Every WebSocket binary message (one Session Manager frame each), as sent."""
    for event in events("ws-binary"):
        yield bytes.fromhex(event["hex"])


def http_request_text(event: dict[str, Any]) -> bytes:
    """A captured HTTP request in the layout the sigv4 and API targets read: request line,
    headers, an empty line, the body (CRLF line ends, headers as latin-1)."""
    lines = [f"{event['method']} {event['path']} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in event["headers"].items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    body = bytes.fromhex(event["hex"]) if "hex" in event else event.get("text", "").encode("utf-8")
    return head + body


def issued_secrets() -> dict[str, str]:
    """Secret keys the captured gateway handed out (agent role credentials), by access key id."""
    secrets = {}
    for event in events("http-response"):
        if "SecretAccessKey" in event.get("text", ""):
            issued = json.loads(event["text"])
            secrets[issued["AccessKeyId"]] = issued["SecretAccessKey"]
    return secrets
