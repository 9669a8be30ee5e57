"""The access webhook (``openssm server --access-webhook URL``): a JSON ``POST`` for each request and
each decision (and for each grant's end), signed with an HMAC secret so the receiver can tell it came
from this server.

Each delivery is a row of the durable outbox (``store.access_webhooks``) written in the transaction
that made the change, so the API call never waits for the receiver and nothing is lost to a restart.
The webhook task sends what is due, one node of a cluster per delivery (a claim with a lease), and
retries a delivery the receiver did not accept (no 2xx) with exponential backoff, for a day.

Headers of every attempt:

- ``X-OpenSSM-Event``: requested | approved | denied | revoked | expired
- ``X-OpenSSM-Delivery``: the delivery's id (the same on every attempt: receivers drop repeats by it)
- ``X-OpenSSM-Signature``: ``t=<unix time of this attempt>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import uuid
from typing import Any, Final

import aiohttp

from openssm.services import AccessSettings, Services
from openssm.store import access_webhooks
from openssm.store.access_requests import AccessRequestRow, AccessStatus
from openssm.store.access_webhooks import DeliveryRow
from openssm.store.rows import Db

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-OpenSSM-Signature"
EVENT_HEADER: Final = "X-OpenSSM-Event"
DELIVERY_HEADER: Final = "X-OpenSSM-Delivery"
SIGNATURE_VERSION: Final = "v1"
TIMEOUT_SECONDS: Final = 10.0
LEASE: Final = dt.timedelta(seconds=60)  # longer than an attempt can take
GIVE_UP_AFTER: Final = dt.timedelta(days=1)
USER_AGENT: Final = "OpenSSM-AccessWebhook/1"

# What each status change is called on the wire: the status in lower case, but a new (Pending) request
# is "requested".
EVENTS: Final = {status: status.value.lower() for status in AccessStatus} | {
    AccessStatus.PENDING: "requested"
}


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _name_of(arn: str | None) -> str | None:
    return None if arn is None else arn.rsplit("/", 1)[-1]


def payload(row: AccessRequestRow, *, delivery_id: str, now: dt.datetime) -> dict[str, Any]:
    """The JSON a receiver gets for the request as it now is."""
    decision: str | None = None
    decider_arn = decision_reason = None
    if row.status == AccessStatus.REVOKED:  # a decision to end it early
        decision, decider_arn, decision_reason = "Revoked", row.ended_by_arn, row.end_reason
    elif row.status in (AccessStatus.APPROVED, AccessStatus.DENIED):
        decision, decider_arn, decision_reason = str(row.status), row.decider_arn, row.decision_reason
    return {
        "event": EVENTS[row.status],
        "deliveryId": delivery_id,
        "time": _time(now),
        "requestId": row.request_id,
        "requester": row.requester_name,
        "requesterArn": row.requester_arn,
        "target": row.target,
        "documentName": row.document_name,
        "durationSeconds": row.duration_seconds,
        "reason": row.reason,
        "status": str(row.status),
        "decision": decision,
        "decider": _name_of(decider_arn),
        "deciderArn": decider_arn,
        "decisionReason": decision_reason,
        "expiresAt": _time(row.expires_at),
    }


async def enqueue(db: Db, settings: AccessSettings, row: AccessRequestRow, *, now: dt.datetime) -> None:
    """Queue the delivery for the request's new status (in the caller's transaction); nothing
    without a configured webhook."""
    if settings.webhook_url is None:
        return
    delivery_id = str(uuid.uuid4())
    body = json.dumps(payload(row, delivery_id=delivery_id, now=now), separators=(",", ":"))
    await access_webhooks.enqueue(
        db, delivery_id=delivery_id, request_id=row.request_id, event=EVENTS[row.status], body=body, now=now
    )


def signature(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``X-OpenSSM-Signature`` value for one attempt."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},{SIGNATURE_VERSION}={digest}"


def verify(secret: bytes, body: bytes, header: str, *, now: int, tolerance: int = 300) -> bool:
    """What a receiver does (and the tests do): the signature matches and is recent."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    expected = signature(secret, body, timestamp).split(",", 1)[1]
    given = f"{SIGNATURE_VERSION}={parts.get(SIGNATURE_VERSION, '')}"
    return abs(now - timestamp) <= tolerance and hmac.compare_digest(expected, given)


def retry_delay(attempts: int, settings: AccessSettings) -> float:
    """After the n-th failed attempt: base, 2·base, 4·base … capped at the maximum."""
    return float(
        min(settings.webhook_retry_seconds * (2 ** min(attempts, 30)), settings.webhook_retry_max_seconds)
    )


class Deliverer:
    """Sends the due deliveries of the outbox (run by the webhook task, on every node)."""

    def __init__(self, services: Services, http: aiohttp.ClientSession) -> None:
        self.services = services
        self.http = http
        self.settings = services.config.access

    async def deliver_due(self) -> int:
        """One pass; returns how many deliveries the receiver accepted."""
        if self.settings.webhook_url is None or self.settings.webhook_secret is None:
            return 0
        engine, clock, node_id = self.services.engine, self.services.clock, self.services.config.node_id
        accepted = 0
        for row in await access_webhooks.due(engine, now=clock.now()):
            if not await access_webhooks.claim(engine, row.id, node_id=node_id, now=clock.now(), lease=LEASE):
                continue  # another node has it
            error = await self._send(row)
            now = clock.now()
            if error is None:
                await access_webhooks.delivered(engine, row.id, node_id=node_id, now=now)
                accepted += 1
                continue
            if now - row.created_at >= GIVE_UP_AFTER:
                log.error(
                    "access webhook: gave up on delivery %s (%s): %s", row.delivery_id, row.event, error
                )
                retry_at = None
            else:
                delay = retry_delay(row.attempts, self.settings)
                log.warning(
                    "access webhook: delivery %s (%s) failed: %s; retrying in %.1fs",
                    row.delivery_id,
                    row.event,
                    error,
                    delay,
                )
                retry_at = now + dt.timedelta(seconds=delay)
            await access_webhooks.attempt_failed(
                engine, row.id, node_id=node_id, error=error, retry_at=retry_at
            )
        return accepted

    async def _send(self, row: DeliveryRow) -> str | None:
        """One attempt; None when the receiver accepted it, else what went wrong."""
        assert self.settings.webhook_url is not None and self.settings.webhook_secret is not None
        body = row.body.encode()
        timestamp = int(self.services.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: row.event,
            DELIVERY_HEADER: row.delivery_id,
            SIGNATURE_HEADER: signature(self.settings.webhook_secret, body, timestamp),
        }
        try:
            async with self.http.post(
                self.settings.webhook_url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
            ) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"[:1024]
