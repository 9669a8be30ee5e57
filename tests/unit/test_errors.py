"""One exception root: every exception class OpenSSM defines derives from ``OpenSSMError``, and
wire protocol errors say whose fault they are (local: ours; remote: the peer's)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import openssm
from openssm.errors import LocalProtocolError, OpenSSMError, ProtocolError, RemoteProtocolError
from openssm.protocol.channel import WindowFull
from openssm.protocol.frames import FrameError
from openssm.protocol.messages import MessageError
from openssm.protocol.smux import SmuxProtocolError
from openssm.protocol.websocket import WebSocketProtocolError


def _openssm_exception_classes() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(openssm.__path__, "openssm."):
        if ".migrations" in info.name or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _name, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("openssm."):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


def test_every_openssm_exception_has_the_one_root() -> None:
    classes = _openssm_exception_classes()
    assert len(classes) > 40  # the walk really found the package's errors
    strays = sorted(cls.__qualname__ for cls in classes if not issubclass(cls, OpenSSMError))
    assert strays == []


def test_peer_errors_are_remote_and_our_own_are_local() -> None:
    for remote in (FrameError, MessageError, SmuxProtocolError, WebSocketProtocolError):
        assert issubclass(remote, RemoteProtocolError)
        assert not issubclass(remote, LocalProtocolError)
    assert issubclass(WindowFull, LocalProtocolError)
    assert issubclass(LocalProtocolError, ProtocolError) and issubclass(RemoteProtocolError, ProtocolError)
