"""What the agent reports about its node in UpdateInstanceInformation."""

from __future__ import annotations

import contextlib
import pathlib
import socket
import urllib.parse
from typing import Any

from openssm.agent.config import AGENT_NAME, AGENT_VERSION

OS_RELEASE_PATHS = (pathlib.Path("/etc/os-release"), pathlib.Path("/usr/lib/os-release"))


def os_release(paths: tuple[pathlib.Path, ...] = OS_RELEASE_PATHS) -> dict[str, str]:
    for path in paths:
        with contextlib.suppress(OSError):
            values: dict[str, str] = {}
            for line in path.read_text(errors="replace").splitlines()[:200]:
                key, sep, value = line.partition("=")
                if sep and key.strip() and not key.startswith("#"):
                    values[key.strip()] = value.strip().strip("\"'")
            return values
    return {}


def local_ip_address(towards: str) -> str:
    """The address this node uses to reach ``towards`` (a URL); no packet is sent."""
    host = urllib.parse.urlsplit(towards).hostname or "192.0.2.1"
    with contextlib.suppress(OSError):
        infos = socket.getaddrinfo(host, 9, type=socket.SOCK_DGRAM)
        family, _type, _proto, _name, address = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(address)
            return str(probe.getsockname()[0])
    return ""


def short_instance_information(instance_id: str) -> dict[str, Any]:
    """The first, short UpdateInstanceInformation the real agent sends at start."""
    return {
        "AgentName": AGENT_NAME,
        "AgentVersion": AGENT_VERSION,
        "InstanceId": instance_id,
        "PlatformType": "Linux",
    }


def full_instance_information(instance_id: str, endpoint: str) -> dict[str, Any]:
    release = os_release()
    return {
        "AgentName": AGENT_NAME,
        "AgentStatus": "Active",
        "AgentVersion": AGENT_VERSION,
        "AvailabilityZone": "",
        "AvailabilityZoneId": "",
        "ComputerName": socket.gethostname(),
        "IPAddress": local_ip_address(endpoint),
        "InstanceId": instance_id,
        "PlatformName": release.get("NAME", "Linux"),
        "PlatformType": "Linux",
        "PlatformVersion": release.get("VERSION_ID", ""),
        "SSMConnectionChannel": "",
    }
