"""The agent's Run Command steps with a real ``sh``, and the job runner's ack/reply messages."""

from __future__ import annotations

import asyncio
import json
import pathlib
from typing import Any

from openssm.agent.config import AgentSettings
from openssm.agent.jobs import JobRunner, document_status, run_command, run_shell_step
from openssm.protocol import messages as proto
from openssm.protocol import run_command as rc
from openssm.protocol.frames import Frame, MessageType

COMMAND_ID = "0b8a5a2e-6a0e-4a4e-9d7f-0123456789ab"
INSTANCE_ID = "mi-0123456789abcdef0"


def step(script: str, *, timeout: int = 30, workdir: str = "") -> rc.ShellStep:
    return rc.ShellStep("runShellScript", script, workdir, timeout)


async def test_step_captures_output_and_exit_code(tmp_path: pathlib.Path) -> None:
    result = await run_shell_step(step("echo $((6*7)); echo bad >&2; exit 5"), tmp_path, asyncio.Event())
    assert (result.status, result.code) == ("Failed", 5)
    assert (result.standard_output, result.standard_error) == ("42\n", "bad\n")
    assert result.action == "aws:runShellScript"


async def test_step_runs_in_its_working_directory(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "work"
    target.mkdir()
    result = await run_shell_step(step("pwd", workdir=str(target)), tmp_path, asyncio.Event())
    assert (result.status, result.standard_output) == ("Success", f"{target}\n")
    missing = await run_shell_step(step("pwd", workdir=str(tmp_path / "nope")), tmp_path, asyncio.Event())
    assert missing.status == "Failed" and "does not exist" in missing.standard_error


async def test_step_name_cannot_place_its_script_outside_the_scratch_dir(tmp_path: pathlib.Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    hostile = rc.ShellStep("../../escaped", "echo ran", "", 30)
    result = await run_shell_step(hostile, scratch, asyncio.Event())
    assert (result.status, result.standard_output) == ("Success", "ran\n")
    assert not (tmp_path / "escaped.sh").exists() and not (tmp_path.parent / "escaped.sh").exists()
    assert [path.name for path in scratch.iterdir()] == ["______escaped.sh"]


async def test_step_is_killed_at_its_timeout(tmp_path: pathlib.Path) -> None:
    result = await run_shell_step(step("echo begun; sleep 30", timeout=1), tmp_path, asyncio.Event())
    assert result.status == "TimedOut"
    assert result.standard_output == "begun\n"


async def test_output_is_bounded(tmp_path: pathlib.Path) -> None:
    result = await run_shell_step(step("yes x | head -c 200000"), tmp_path, asyncio.Event())
    assert result.status == "Success"
    assert len(result.standard_output) == rc.MAX_STDOUT_CHARS


async def test_command_stops_after_a_failed_step_and_is_cancellable(tmp_path: pathlib.Path) -> None:
    failing = rc.SendCommand(COMMAND_ID, "doc", (step("exit 2"), step("echo never")))
    results = await run_command(failing, asyncio.Event())
    assert [r.status for r in results] == ["Failed"]
    assert document_status(results) == "Failed"
    stop = asyncio.Event()
    running = asyncio.create_task(run_command(rc.SendCommand(COMMAND_ID, "doc", (step("sleep 30"),)), stop))
    await asyncio.sleep(0.3)
    stop.set()
    results = await asyncio.wait_for(running, 10)
    assert document_status(results) == "Cancelled"


class RecordingChannel:
    """The outgoing side of a control channel: records frames (the socket itself is tested elsewhere)."""

    def __init__(self) -> None:
        self.sent: list[Frame] = []
        self.changed = asyncio.Event()

    async def send(self, frame: Frame, *, wait_connected: float) -> bool:
        self.sent.append(frame)
        self.changed.set()
        return True

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [json.loads(bytes(f.payload)) for f in self.sent if f.message_type == kind]

    async def wait_for(self, predicate: Any) -> None:
        async with asyncio.timeout(10):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


def job_frame(topic: str, content: str, job_id: str) -> Frame:
    return proto.AgentJob(job_id, content, topic).to_frame()


async def test_runner_acks_replies_and_ignores_a_repeat() -> None:
    channel = RecordingChannel()
    runner = JobRunner(channel, instance_id=INSTANCE_ID, settings=AgentSettings())  # type: ignore[arg-type]
    job_id = rc.job_id(COMMAND_ID, INSTANCE_ID)
    content = rc.send_command_payload(
        command_id=COMMAND_ID,
        document_name=rc.RUN_SHELL_SCRIPT,
        document_content=rc.builtin_command_documents()[rc.RUN_SHELL_SCRIPT],
        parameters={"commands": ["echo hello"]},
    )
    frame = job_frame(rc.SEND_COMMAND_TOPIC, content, job_id)
    await runner.on_job(frame)
    await runner.on_job(frame)  # delivered twice: acknowledged twice, run once
    acks = channel.of(MessageType.AGENT_JOB_ACK)
    assert [a["statusCode"] for a in acks] == ["200", "200"]
    assert acks[0]["jobId"] == job_id and acks[0]["acknowledgedMessageId"] == str(frame.message_id)

    def final_reply() -> bool:
        replies = channel.of(MessageType.AGENT_JOB_REPLY)
        return any(json.loads(r["content"])["documentStatus"] == "Success" for r in replies)

    await channel.wait_for(final_reply)
    replies = channel.of(MessageType.AGENT_JOB_REPLY)
    statuses = [json.loads(r["content"])["documentStatus"] for r in replies]
    assert statuses[0] == "InProgress" and statuses.count("Success") >= 1
    final = rc.parse_send_reply(replies[-1]["content"])
    assert final.steps[0].standard_output == "hello\n"
    last = [f for f in channel.sent if f.message_type == MessageType.AGENT_JOB_REPLY][-1]
    runner.on_reply_ack(proto.AgentJobReplyAck(job_id, str(last.message_id)).to_frame())
    await runner.stop()


async def test_cancel_of_a_job_never_started_reports_it_cancelled() -> None:
    channel = RecordingChannel()
    runner = JobRunner(channel, instance_id=INSTANCE_ID, settings=AgentSettings())  # type: ignore[arg-type]
    target = rc.job_id(COMMAND_ID, INSTANCE_ID)
    await runner.on_job(
        job_frame(
            rc.CANCEL_COMMAND_TOPIC,
            rc.cancel_command_payload(target),
            rc.job_id("11111111-2222-4333-8444-555555555555", INSTANCE_ID),
        )
    )
    await channel.wait_for(lambda: channel.of(MessageType.AGENT_JOB_REPLY))
    reply = channel.of(MessageType.AGENT_JOB_REPLY)[0]
    assert reply["jobId"] == target
    assert json.loads(reply["content"])["documentStatus"] == "Cancelled"
    runner.on_reply_ack(proto.AgentJobReplyAck(target, str(channel.sent[-1].message_id)).to_frame())
    await runner.stop()


async def test_unreadable_job_is_refused_in_the_ack() -> None:
    channel = RecordingChannel()
    runner = JobRunner(channel, instance_id=INSTANCE_ID, settings=AgentSettings())  # type: ignore[arg-type]
    await runner.on_job(Frame(MessageType.AGENT_JOB, payload=b"not json"))
    (ack,) = channel.of(MessageType.AGENT_JOB_ACK)
    assert ack["statusCode"].startswith("514")
