"""The published keys of identity providers: each issuer's discovery document, then its JWKS,
fetched from the issuer (and nowhere else) and kept for a while.

Kept per issuer for ``KEYS_TTL``; a token whose ``kid`` is not among the kept keys makes one fresh
fetch (the provider may have rotated its keys), at most once per ``REFRESH_INTERVAL`` per issuer, so
tokens with made-up kids cannot turn the server into a fetching machine against the provider. At
most ``MAX_ISSUERS`` issuers are kept (the least recently used goes). The cache belongs to the
process: keys are public facts about an issuer, the same for every server in it; entries are keyed
by the CA bundle too, since which TLS is trusted decides what was fetched.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import pathlib
from typing import Any, Final

from openssm.clock import Clock
from openssm.errors import OpenSSMError
from openssm.oidc.issuer import MAX_DOCUMENT_BYTES, Discovery, IssuerError, parse_discovery, parse_issuer
from openssm.transport.json_fetch import FetchError, fetch_json

log = logging.getLogger(__name__)

KEYS_TTL: Final = 3600.0  # seconds
REFRESH_INTERVAL: Final = 30.0  # seconds between forced refreshes of one issuer
MAX_ISSUERS: Final = 64


class IssuerUnreachable(OpenSSMError):
    """The issuer's discovery document or keys could not be had (or are unusable)."""


@dataclasses.dataclass(frozen=True, slots=True)
class IssuerKeys:
    discovery: Discovery
    jwks: dict[str, Any]
    fetched_at: float  # monotonic


_Key = tuple[str, str]  # (issuer, CA bundle path or "")


class IssuerKeyCache:
    def __init__(self, *, ttl: float = KEYS_TTL, refresh_interval: float = REFRESH_INTERVAL) -> None:
        self.ttl = ttl
        self.refresh_interval = refresh_interval
        self._entries: collections.OrderedDict[_Key, IssuerKeys] = collections.OrderedDict()
        self._locks: dict[_Key, asyncio.Lock] = {}

    def forget(self) -> None:
        self._entries.clear()

    async def discovery(self, issuer: str, clock: Clock, ca_bundle: pathlib.Path | None) -> Discovery:
        return (await self.keys(issuer, clock, ca_bundle)).discovery

    async def keys(
        self, issuer: str, clock: Clock, ca_bundle: pathlib.Path | None, *, refresh: bool = False
    ) -> IssuerKeys:
        """The issuer's keys; ``refresh``: the kept ones lacked a token's kid, fetch again (rate-limited)."""
        key: _Key = (issuer, str(ca_bundle or ""))
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one fetch per issuer at a time; the others then find it kept
            now = clock.monotonic()
            kept = self._entries.get(key)
            if kept is not None:
                age = now - kept.fetched_at
                if age < self.ttl and (not refresh or age < self.refresh_interval):
                    self._entries.move_to_end(key)
                    return kept
            fetched = await _fetch(issuer, ca_bundle, now)
            self._entries[key] = fetched
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ISSUERS:
                dropped, _ = self._entries.popitem(last=False)
                self._locks.pop(dropped, None)
            return fetched


async def _fetch(issuer_url: str, ca_bundle: pathlib.Path | None, now: float) -> IssuerKeys:
    try:
        issuer = parse_issuer(issuer_url)
        discovery = parse_discovery(
            issuer, await fetch_json(issuer.discovery_url, ca_bundle=ca_bundle, limit=MAX_DOCUMENT_BYTES)
        )
        jwks = await fetch_json(discovery.jwks_uri, ca_bundle=ca_bundle, limit=MAX_DOCUMENT_BYTES)
    except (IssuerError, FetchError) as exc:
        log.warning("identity provider %s: %s", issuer_url[:200], exc)
        raise IssuerUnreachable(str(exc)) from exc
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise IssuerUnreachable(f"{discovery.jwks_uri} is not a JSON Web Key Set")
    log.info("identity provider %s: %d keys fetched", issuer_url[:200], len(jwks["keys"]))
    return IssuerKeys(discovery, jwks, now)


ISSUER_KEYS: Final = IssuerKeyCache()
