"""The recorder behind a real gateway sees what the user saw: retransmitted and reordered frames
(both ends retransmit, the relay passes everything on) are recorded once, in sequence order."""

from __future__ import annotations

import json
import pathlib

from tests.integration.test_gateway_sessions import FAST, IID, SID, keystroke, output, start
from tests.support.gateway import NODE_ID, next_frame, running_gateway, wait_for

from openssm.logs.asciicast import read_cast
from openssm.logs.service import SessionLogging
from openssm.protocol.frames import Frame, MessageType, PayloadType

SHELL = {"schemaVersion": "1.0", "sessionType": "Standard_Stream", "inputs": {}}


async def test_retransmissions_and_reordering_are_recorded_once_in_order(tmp_path: pathlib.Path) -> None:
    async with running_gateway(
        tmp_path, settings=FAST, extensions=lambda services: [SessionLogging(services)], record_input=True
    ) as gw:
        await gw.add_instance(IID)
        await gw.add_agent_user()
        s = await start(gw, document=SHELL, document_name="SSM-SessionManagerRunShell", parameters={})

        size = Frame(MessageType.INPUT_STREAM_DATA, 0, 0, PayloadType.SIZE, b'{"cols":100,"rows":30}')
        await s.client.send_bytes(size.encode())
        for frame in (keystroke(1, b"l"), keystroke(1, b"l"), keystroke(2, b"s\r")):  # a resend
            await s.client.send_bytes(frame.encode())
        sent = [(0, b"$ "), (2, b"world\r\n"), (1, b"hello "), (0, b"$ "), (2, b"world\r\n"), (3, b"$ ")]
        for seq, data in sent:
            await s.agent.send_bytes(output(seq, data).encode())
        for _ in sent:
            assert (await next_frame(s.client)).message_type == MessageType.OUTPUT_STREAM_DATA  # all relayed
        await gw.services.bus.publish(
            f"node.{NODE_ID}", {"type": "terminate", "session_id": SID, "reason": "done"}
        )
        await gw.wait_status(SID, "Terminated")

        directory = tmp_path / "sessions"

        def closed() -> bool:  # the recorder closes the .jsonl first and the .cast last
            try:
                return len(read_cast((directory / f"{SID}.cast").read_text())[1]) == 6
            except (OSError, ValueError):
                return False

        await wait_for(closed, 5, "the recording was never closed")
        events = [json.loads(line) for line in (directory / f"{SID}.jsonl").read_text().splitlines()]
        assert events[-1]["event"] == "session_ended"
        assert events[-1]["reason"] == "done"
        header, cast = read_cast((directory / f"{SID}.cast").read_text())
        assert (header["width"], header["height"]) == (100, 30)
        assert [(code, data) for _, code, data in cast] == [
            ("i", "l"),
            ("i", "s\r"),
            ("o", "$ "),
            ("o", "hello "),
            ("o", "world\r\n"),
            ("o", "$ "),
        ]
        assert (directory / f"{SID}.log").read_text() == "$ hello world\n$\n"
