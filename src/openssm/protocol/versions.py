"""Version strings and the behaviour gates they switch (``session-manager-protocol.md`` §3.5).

Two comparison rules exist on the wire and both matter:

* the plugin (checking the agent's ``AgentVersion``) splits on ``.``, compares part by part as
  integers, and answers "not greater" when the part counts differ or a part is not a number —
  which is why we always advertise four-part versions;
* the agent (checking the plugin's ``ClientVersion``) pads the shorter version with zeros, so
  ``1.2.677.0 >= 1.1.70`` holds.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not even typing: the plugin's version check imports this module
if TYPE_CHECKING:
    from typing import Final

# What our client advertises in its open frame and HandshakeResponse: the plugin release whose
# behaviour we reproduce, so real agents pick the same code paths (mux, keepalive off).
CLIENT_VERSION: Final = "1.2.677.0"
# What ``session-manager-plugin --version`` prints. The AWS CLI only compares it with its own
# thresholds (> 1.2.497.0: hand the response over in an env var; < its recommended minimum,
# 1.2.764.0 in awscli 1.46: print an "outdated SessionManagerPlugin" warning before every session),
# so it may run ahead of the wire version above, which stays the one verified against real agents.
PLUGIN_REPORTED_VERSION: Final = "1.2.764.0"
# What our agent advertises in HandshakeRequest: four parts, above every plugin gate.
AGENT_VERSION: Final = "3.3.987.0"

MAX_VERSION_LENGTH: Final = 64


def _numeric_parts(version: str) -> tuple[int, ...] | None:
    """The dotted parts as integers, or None if any part is not a plain decimal number."""
    if not version or len(version) > MAX_VERSION_LENGTH:
        return None
    parts = version.strip().split(".")
    if not all(part.isascii() and part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts)


def plugin_is_greater(version: str, than: str) -> bool:
    """``version > than`` exactly as session-manager-plugin decides it.

    Differing part counts and unparsable versions are "not greater".
    """
    left, right = _numeric_parts(version), _numeric_parts(than)
    if left is None or right is None or len(left) != len(right):
        return False
    return left > right


def agent_compare(version: str, other: str) -> int | None:
    """-1/0/1 as amazon-ssm-agent orders versions (missing parts count as 0); None if unparsable."""
    left, right = _numeric_parts(version), _numeric_parts(other)
    if left is None or right is None:
        return None
    width = max(len(left), len(right))
    padded_left = left + (0,) * (width - len(left))
    padded_right = right + (0,) * (width - len(right))
    return (padded_left > padded_right) - (padded_left < padded_right)


# -- gates the plugin applies to the agent's AgentVersion ------------------------------------------

MUX_MIN_AGENT_VERSION: Final = "3.0.196.0"
PLUGIN_KEEPALIVE_OFF_AGENT_VERSION: Final = "3.1.1511.0"
TERMINATE_FLAG_AGENT_VERSION: Final = "2.3.722.0"


def uses_mux(agent_version: str) -> bool:
    """LocalPortForwarding runs over smux (else basic mode): AgentVersion > 3.0.196.0."""
    return plugin_is_greater(agent_version, MUX_MIN_AGENT_VERSION)


def client_smux_keepalive_off(agent_version: str) -> bool:
    """The client disables smux keepalive: AgentVersion > 3.1.1511.0."""
    return plugin_is_greater(agent_version, PLUGIN_KEEPALIVE_OFF_AGENT_VERSION)


def terminate_flag_supported(agent_version: str) -> bool:
    """Basic-mode Ctrl-C sends Flag TerminateSession (else calls the TerminateSession API)."""
    return plugin_is_greater(agent_version, TERMINATE_FLAG_AGENT_VERSION)


# -- gates the agent applies to the client's ClientVersion -----------------------------------------

MUX_MIN_CLIENT_VERSION: Final = "1.1.70"
AGENT_KEEPALIVE_OFF_CLIENT_VERSION: Final = "1.2.331.0"
UPGRADE_NOTE_MAX_CLIENT_VERSION: Final = "1.2.295"


def agent_uses_mux(client_version: str) -> bool:
    """The agent serves LocalPortForwarding over smux: ClientVersion >= 1.1.70."""
    return agent_compare(client_version, MUX_MIN_CLIENT_VERSION) in (0, 1)


def agent_smux_keepalive_off(client_version: str) -> bool:
    """The agent disables smux keepalive: ClientVersion > 1.2.331.0."""
    return agent_compare(client_version, AGENT_KEEPALIVE_OFF_CLIENT_VERSION) == 1


def needs_upgrade_note(client_version: str) -> bool:
    """NonInteractive sessions with separate streams warn old clients: ClientVersion <= 1.2.295."""
    return agent_compare(client_version, UPGRADE_NOTE_MAX_CLIENT_VERSION) in (-1, 0)


# -- gate the AWS CLI applies to the output of ``session-manager-plugin --version`` ---------------

ENV_HANDOFF_MIN_PLUGIN_VERSION: Final = "1.2.497.0"


def cli_uses_env_handoff(plugin_version: str) -> bool:
    """The CLI passes the StartSession response via env var: plugin version > 1.2.497.0.

    The CLI drops whitespace and zero-pads before comparing (unlike the plugin).
    """
    order = agent_compare("".join(plugin_version.split()), ENV_HANDOFF_MIN_PLUGIN_VERSION)
    return order is not None and order > 0
