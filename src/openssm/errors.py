"""The one root of every exception OpenSSM raises on purpose, and the protocol-error split.

Every package's errors derive from :class:`OpenSSMError`, so a caller can tell OpenSSM's own
failures from bugs and from library errors. Wire protocol errors say whose fault they are, as
h11 does:

* :class:`LocalProtocolError`: this process tried to do what the protocol forbids (a caller's
  bug, or a state that does not allow the action). Never caused by a peer.
* :class:`RemoteProtocolError`: the peer sent what the protocol forbids (a malformed frame, a bad
  JSON body, a smux header with an unknown command). Each process handles one the same way: log it
  with the peer and the reason, then drop the message or close the channel, as the protocol says.

This module imports nothing, so every layer (the pure cores included) may use it.
"""

from __future__ import annotations


class OpenSSMError(Exception):
    """Root of OpenSSM's exceptions."""


class ProtocolError(OpenSSMError):
    """A wire protocol's rule was broken, by this process or by its peer."""


class LocalProtocolError(ProtocolError):
    """This process tried to do what the protocol (or the connection's state) does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""
