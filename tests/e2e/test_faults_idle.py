"""Idle sessions stay up: a shell and a port tunnel (with a TCP connection open through it) that carry
nothing for longer than two of the gateway's keepalive intervals (WebSocket pings every 30 s on each
data channel), with real `openssm server`, `openssm agent` and `openssm start-session` processes
and a fault proxy on each data path. The proxies must see the keepalives cross both paths, on the
same connections throughout (no reconnect), and afterwards the shell answers and the tunnel's
connection carries data, SHA-256-checked. Only the preferences' idle timeout (20 minutes by
default) ends an idle session; nothing cuts one at a fixed age."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.e2e.forwarding import session_process
from tests.e2e.harness import ProxiedSystem, openssm_argv, port_forwarding_argv, proxied_system
from tests.e2e.test_faults_shell import Terminal

pytestmark = pytest.mark.slow

DATA = "/v1/data-channel/"
KEEPALIVE = 30.0  # GatewaySettings.ws_heartbeat
IDLE = 2 * KEEPALIVE + 10


class EchoServer:
    """Echoes what it reads back on each connection (a thread per connection)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedSystem]:
    with proxied_system(tmp_path_factory.mktemp("faults-idle")) as running:
        yield running


def links(system: ProxiedSystem) -> dict[str, list[tuple[int, int, int]]]:
    """Open data-channel links per path: (id, bytes up, bytes down)."""
    return {
        name: [(link.id, link.up, link.down) for link in proxy.links(DATA)]
        for name, proxy in (("client", system.client_path), ("agent", system.agent_path))
    }


def echo(sock: socket.socket, size: int) -> tuple[str, str]:
    data = os.urandom(size)
    sock.sendall(data)
    back = bytearray()
    while len(back) < size:
        chunk = sock.recv(65536)
        assert chunk, "the tunnel's connection closed"
        back += chunk
    return hashlib.sha256(data).hexdigest(), hashlib.sha256(back).hexdigest()


@pytest.mark.timeout(300)
def test_idle_shell_and_tunnel_stay_up(system: ProxiedSystem) -> None:
    assert system.agent.instance_id
    echo_server = EchoServer()
    server = system.server
    shell_argv = openssm_argv(
        "start-session", "--target", system.agent.instance_id, "--endpoint-url", server.endpoint
    )
    terminal = Terminal(shell_argv, server.aws_env())
    try:
        port_argv = port_forwarding_argv(server, system.agent.instance_id, echo_server.port)
        with session_process(port_argv, server.aws_env()) as tunnel:
            terminal.wait_for(r"Starting session with SessionId")
            terminal.child.sendline("echo BEFORE-$((6*7))")
            terminal.wait_for("BEFORE-42")
            (local,) = tunnel.local_ports()
            with socket.create_connection(("127.0.0.1", local), timeout=60) as conn:
                sent, back = echo(conn, 64 * 1024)
                assert sent == back
                before = links(system)
                assert all(len(open_links) == 2 for open_links in before.values()), before
                idle_from = time.monotonic()
                time.sleep(IDLE)  # the idleness under test: nothing is sent for this long
                after = links(system)
                sent, back = echo(conn, 1 << 20)
            terminal.child.sendline("echo AFTER-$((6*7))")
            terminal.wait_for("AFTER-42")
            idle_for = time.monotonic() - idle_from
    finally:
        terminal.close()
        echo_server.close()
    print(f"idle {idle_for:.0f} s: data-channel links before {before}, after {after}")
    print(f"after the idle spell the tunnel echoed 1 MiB: sha256 sent {sent[:16]}…, received {back[:16]}…")
    assert sent == back
    for path in ("client", "agent"):
        assert [link[0] for link in after[path]] == [link[0] for link in before[path]], f"{path} re-dialled"
        moved = [(a[1] - b[1], a[2] - b[2]) for a, b in zip(after[path], before[path], strict=True)]
        # Keepalives crossed each link both ways while the sessions were idle.
        assert all(up > 0 and down > 0 for up, down in moved), f"{path}: no keepalive seen {moved}"
