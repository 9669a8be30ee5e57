"""How a refused request is logged: once, at INFO, by the code that sends the refusal, naming who
(principal), what (action), on what (resource) and why (code and reason).

Refusals happen at the edges: the API dispatcher (authentication, authorisation, unknown
instances, bad input), the MGS REST calls agents make before dialling a channel, and the channel
WebSockets (control, agent data, client data). Each calls :func:`refused` once where it answers,
so "my agent does not show up" is answered by one line in the log:

    refused ssm:UpdateInstanceInformation on arn:aws:ssm:…:managed-instance/mi-… by arn:aws:iam::…:user/node (api): InvalidInstanceId: Instance mi-… is not registered.

In JSON logs the same fields are keys (``surface``, ``principal``, ``action``, ``resource``,
``code``, ``reason``, and the ``request_id`` that went back in ``x-amzn-RequestId``). Reasons are the error messages the client gets, which never carry
secrets; callers must not pass tokens, signatures or keys (an access key *id* is not a secret:
AWS logs it too).
"""

from __future__ import annotations

import logging
from typing import Final

from openssm.ops import requestid
from openssm.ops.logformat import FIELDS_ATTRIBUTE

log = logging.getLogger("openssm.refused")

UNAUTHENTICATED: Final = "unauthenticated"
MAX_FIELD: Final = 512  # a field from the network cannot make a line of unbounded length


def _bounded(value: str) -> str:
    value = value.replace("\n", " ").replace("\r", " ")
    return value if len(value) <= MAX_FIELD else value[: MAX_FIELD - 1] + "…"


def unauthenticated(access_key_id: str | None) -> str:
    """The principal of a request that did not authenticate: at most the key id it claimed."""
    return f"{UNAUTHENTICATED} ({access_key_id})" if access_key_id else UNAUTHENTICATED


def refused(
    surface: str,
    *,
    principal: str | None,
    action: str,
    resource: str | None,
    code: str,
    reason: str,
    level: int = logging.INFO,
) -> None:
    """Log one refusal. ``surface``: ``api``, ``mgs`` (the agents' REST calls), ``control-channel``
    or ``data-channel``."""
    fields: dict[str, str | None] = {
        "request_id": requestid.current.get(),
        "surface": surface,
        "principal": _bounded(principal or UNAUTHENTICATED),
        "action": _bounded(action),
        "resource": _bounded(resource or "-"),
        "code": _bounded(code),
        "reason": _bounded(reason),
    }
    log.log(
        level,
        "refused %s on %s by %s (%s): %s: %s",
        fields["action"],
        fields["resource"],
        fields["principal"],
        surface,
        fields["code"],
        fields["reason"],
        extra={FIELDS_ATTRIBUTE: fields},
    )
