"""What live-session join costs the relay of a shell session, measured side by side in one run.

The same fake agent pushes N output frames (1 KiB, acked one by one by a fake client, window W)
through the gateway (as `bench_gateway_relay.py`), three ways:
- "not joinable": the relay without its injector (what every shell session was before join);
- "joinable, nobody joined": the injector passes frames through, reading each ack's number;
- "renumbered": the gateway has put one line into the stream first, so every frame is renumbered
  and every ack mapped back, and the numbering is written to the store (SQLite) before the frames
  and acks it describes go on, one write per batch (what a session with a joiner pays).

Run: `.venv/bin/python bench/bench_join_relay.py [--frames N] [--window W] [--rounds R]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pathlib
import sys
from collections.abc import Iterator
from unittest import mock

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench_gateway_relay import PAYLOAD, SID, connected_session, pump

from openssm.gateway import session as relay_module
from openssm.gateway.settings import GatewaySettings


@contextlib.contextmanager
def mode(name: str) -> Iterator[None]:
    if name == "not joinable":
        with mock.patch.object(relay_module, "joinable", lambda row: "benchmark: no injector"):
            yield
    else:
        yield


async def through_gateway(name: str, frames: int, window: int) -> float:
    with mode(name):
        async with connected_session(GatewaySettings(ws_heartbeat=300)) as (gw, agent, client):
            relay = gw.node.relays[SID]
            assert (relay.injector is None) == (name == "not joinable")
            if name == "renumbered":
                relay.output_started = True  # as after the shell's first output
                assert await relay.inject_output(b"[openssm] bench joined (read-only)\r\n")
            return await pump(agent, client, frames, window, counts=lambda frame: frame.payload == PAYLOAD)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    names = ("not joinable", "joinable, nobody joined", "renumbered")
    best = dict.fromkeys(names, float("inf"))
    for _ in range(args.rounds):  # interleaved, so a busy moment of the host hits every mode
        for name in names:
            best[name] = min(best[name], await through_gateway(name, args.frames, args.window))
    print(
        f"Shell relay of {args.frames} x 1 KiB output frames, each acked, window {args.window} (best of {args.rounds})"
    )
    for name in names:
        seconds = best[name]
        print(
            f"  {name:26} {args.frames / seconds:9.0f} frames/s   {best['not joinable'] / seconds:5.2f} of not joinable"
        )


if __name__ == "__main__":
    asyncio.run(main())
