"""Request facts for policy conditions that come from the connection, not the identity."""

from __future__ import annotations

import dataclasses
import ipaddress

from aiohttp import web

from openssm.services import ServerConfig


@dataclasses.dataclass(slots=True)
class RequestFacts:
    source_ip: str
    secure_transport: bool
    user_agent: str | None
    requested_region: str


def _in_networks(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def trusted_networks(config: ServerConfig) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in config.trusted_proxies]


def source_ip_and_scheme(
    peer_ip: str, forwarded_for: str | None, forwarded_proto: str | None, *, tls: bool, config: ServerConfig
) -> tuple[str, bool]:
    """The client address and whether it used TLS, believing proxy headers only from trusted proxies.

    Walks X-Forwarded-For from the right; the first address not itself a trusted proxy is the client
    (entries further left were written by the client and cannot be trusted).
    """
    networks = trusted_networks(config)
    if not networks or not _in_networks(peer_ip, networks):
        return peer_ip, tls
    secure = tls
    if forwarded_proto:
        # The right-most value is the one our trusted proxy wrote; values to its left came from
        # the client (a proxy that appends would otherwise let a client claim https).
        secure = forwarded_proto.split(",")[-1].strip().lower() == "https"
    client = peer_ip
    if forwarded_for:
        for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break
            client = hop
            if not _in_networks(hop, networks):
                break
    return client, secure


def peer_address(request: web.Request) -> str:
    remote = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(remote, tuple) and remote:
        return str(remote[0])
    return request.remote or ""


def client_facts(request: web.Request, config: ServerConfig, region: str) -> RequestFacts:
    source_ip, secure = source_ip_and_scheme(
        peer_address(request),
        request.headers.get("X-Forwarded-For"),
        request.headers.get("X-Forwarded-Proto"),
        tls=request.secure,
        config=config,
    )
    return RequestFacts(
        source_ip=source_ip,
        secure_transport=secure,
        user_agent=request.headers.get("User-Agent"),
        requested_region=region,
    )
