"""Fuzz target ``messages``: every JSON message parser of the channels, as a peer's bytes reach it.

The parsers are found by name: each ``parse_*`` function of ``openssm.protocol.messages`` (a module
or a package re-exporting them) and ``openssm.protocol.run_command``. Input: the parser's name,
a newline, then its argument. Parsers of a whole frame (``parse_service_message``,
``parse_stream_json``) read the frame's MessageType (service) or PayloadType byte (stream) first.
An input whose first line names no parser goes to one chosen by a hash of that line.

Checks: only the module's documented errors (RemoteProtocolError, the peer's fault; RunCommandError).
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from openssm.errors import RemoteProtocolError
from openssm.protocol import frames, messages, run_command
from openssm.protocol.run_command import RunCommandError
from tests.fuzz import captures


def parsers() -> dict[str, Callable[..., Any]]:
    found: dict[str, Callable[..., Any]] = {}
    for module in (messages, run_command):
        for name in dir(module):  # dir(): messages loads its submodules on first use of a name
            function = getattr(module, name)
            if name.startswith("parse_") and inspect.isfunction(function):
                found[name] = function
    return dict(sorted(found.items()))


def _call(name: str, parser: Callable[..., Any], argument: bytes) -> None:
    annotation = str(next(iter(inspect.signature(parser).parameters.values())).annotation)
    if "Frame" in annotation:
        if name == "parse_stream_json":
            frame = frames.Frame(
                "output_stream_data", payload_type=argument[0] if argument else 0, payload=argument[1:]
            )
        else:
            message_type, _, payload = argument.partition(b"\n")
            frame = frames.Frame(message_type.decode("ascii", "replace"), payload=payload)
        parser(frame)
    elif (
        "str" in annotation
    ):  # text: open frames arrive as WebSocket text, Run Command content as JSON strings
        parser(argument.decode("utf-8", "surrogateescape"))
    else:
        parser(argument)


def setup() -> Callable[[bytes], None]:
    table = parsers()
    names = list(table)

    def one_input(data: bytes) -> None:
        head, _, argument = data.partition(b"\n")
        name = head.decode("ascii", "replace")
        if name not in table:
            name = names[zlib.crc32(head) % len(names)]
        try:
            _call(name, table[name], argument)
        except (RemoteProtocolError, RunCommandError):
            pass

    return one_input


def seeds() -> Iterator[bytes]:
    for event in captures.events("ws-text"):
        yield b"parse_open_frame\n" + event["text"].encode()
    for message in captures.binary_messages():
        try:
            frame = frames.decode(message)
        except frames.FrameError:
            continue
        payload = bytes(frame.payload)
        if frame.is_stream and frame.payload_type in (3, 5, 6, 7, 8, 9):
            yield b"parse_stream_json\n" + bytes([frame.payload_type]) + payload
        elif not frame.is_stream and frame.message_type != "acknowledge":
            yield b"parse_service_message\n" + frame.message_type.encode() + b"\n" + payload
    document = run_command.builtin_command_documents()["AWS-RunShellScript"]
    send = run_command.send_command_payload(
        command_id="0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
        document_name="AWS-RunShellScript",
        document_content=document,
        parameters={"commands": ["uptime"], "executionTimeout": "3600"},
    )
    yield b"parse_send_command\n" + send.encode()
    yield b"parse_cancel_command\n" + run_command.cancel_command_payload("aws.ssm.x.mi-0").encode()
    step = run_command.StepResult("runShellScript", "aws:runShellScript", "Success", 0, "out", "", "a", "b")
    reply = run_command.send_reply_payload(
        document_status="Success", steps=[step], date_time="2026-11-28T00:00:00.000Z", agent_version="3.3.0.0"
    )
    yield b"parse_send_reply\n" + reply.encode()
    yield b"parse_job_id\naws.ssm.0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0.mi-0123456789abcdef0"
