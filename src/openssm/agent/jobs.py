"""Run Command on the node: ``agent_job`` from the control channel (§4.3).

A sendCommand job is acknowledged (``agent_job_ack`` "200"), reported ``InProgress``, its
``aws:runShellScript`` steps run one after another with ``sh`` (as the agent's own user, in the
step's working directory; at the execution timeout, or when cancelled, the step's whole process
group is killed with SIGKILL and the step reports exit code 137, as AWS's agent does), and the end
reported in an ``agent_job_reply`` (SendReply payload) that is resent until the service acknowledges
it. A cancelCommand job names the job to stop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import pathlib
import re
import shutil
import signal
import tempfile
from collections.abc import Coroutine
from typing import Any, Final

from openssm.agent.config import AGENT_VERSION, AgentSettings
from openssm.agent.control_channel import ControlChannel
from openssm.agent.pty_process import programs_get_default_signals
from openssm.protocol import messages as proto
from openssm.protocol import run_command as rc
from openssm.protocol.frames import Frame

log = logging.getLogger(__name__)

ACK_OK: Final = "200"
ACK_UNREADABLE: Final = "51401"  # the agent's family of "514xx" refusals
REPLY_ATTEMPTS: Final = 5
REPLY_RETRY_SECONDS: Final = 3.0
REMEMBERED_JOBS: Final = 1000
READ_CHUNK: Final = 64 * 1024
KILL_GRACE_SECONDS: Final = 2.0


@dataclasses.dataclass(slots=True)
class _Capture:
    """The head of a stream, bounded: the rest is read and dropped so the child never blocks."""

    limit: int
    data: bytearray = dataclasses.field(default_factory=bytearray)

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(READ_CHUNK):
            room = self.limit - len(self.data)
            if room > 0:
                self.data += chunk[:room]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def _kill_group(process: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def run_shell_step(step: rc.ShellStep, scratch: pathlib.Path, stop: asyncio.Event) -> rc.StepResult:
    """Run one step; ``stop`` set means cancelled."""
    start = proto.iso_millis()
    # The step name comes off the wire: keep it to one harmless path component.
    script = scratch / f"{re.sub(r'[^A-Za-z0-9_-]', '_', step.name) or 'step'}.sh"
    script.write_text(step.script + "\n")
    workdir = pathlib.Path(step.working_directory) if step.working_directory else scratch
    if not workdir.is_dir():
        message = f"Working directory {step.working_directory} does not exist or is not a directory."
        return rc.StepResult(
            step.name, rc.RUN_SHELL_SCRIPT_ACTION, "Failed", 1, "", message, start, proto.iso_millis()
        )
    # Bytes: a limit in characters is at most this many UTF-8 bytes of text.
    stdout, stderr = _Capture(rc.MAX_STDOUT_CHARS * 4), _Capture(rc.MAX_STDERR_CHARS * 4)
    programs_get_default_signals()
    process = await asyncio.create_subprocess_exec(
        "sh",
        str(script),
        cwd=str(workdir),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group: a timeout or cancel kills everything it started
    )
    readers = asyncio.gather(stdout.drain(process.stdout), stderr.drain(process.stderr), process.wait())
    stopped = asyncio.ensure_future(stop.wait())
    waiters: set[asyncio.Future[Any]] = {readers, stopped}
    status = "Success"
    try:
        done, _ = await asyncio.wait(
            waiters, timeout=step.timeout_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        if readers not in done:
            status = "Cancelled" if stopped in done else "TimedOut"
            _kill_group(process, signal.SIGKILL)
            # Children that left the group may hold the pipes open: stop reading after a moment.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(readers), KILL_GRACE_SECONDS)
    finally:
        stopped.cancel()
        if not readers.done():
            _kill_group(process, signal.SIGKILL)
            readers.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await readers
    code = process.returncode if process.returncode is not None else -1
    if status == "Success" and code != 0:
        status = "Failed"
    elif status in ("TimedOut", "Cancelled"):
        code = rc.STOPPED_EXIT_CODE
    return rc.StepResult(
        step.name,
        rc.RUN_SHELL_SCRIPT_ACTION,
        status,
        code,
        stdout.text()[: rc.MAX_STDOUT_CHARS],
        stderr.text()[: rc.MAX_STDERR_CHARS],
        start,
        proto.iso_millis(),
    )


def document_status(steps: list[rc.StepResult]) -> str:
    statuses = {step.status for step in steps}
    for status in ("Cancelled", "TimedOut", "Failed"):
        if status in statuses:
            return status
    return "Success"


async def run_command(command: rc.SendCommand, stop: asyncio.Event) -> list[rc.StepResult]:
    """Every step in order, stopping after the first that does not succeed."""
    scratch = pathlib.Path(tempfile.mkdtemp(prefix=f"openssm-{command.command_id[:8]}-"))
    results: list[rc.StepResult] = []
    try:
        for step in command.steps:
            result = await run_shell_step(step, scratch, stop)
            results.append(result)
            if result.status != "Success":
                break
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


class JobRunner:
    def __init__(self, control: ControlChannel, *, instance_id: str, settings: AgentSettings) -> None:
        self._control = control
        self.instance_id = instance_id
        self.settings = settings
        self._running: dict[str, asyncio.Event] = {}  # job id -> its stop signal
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._acks: dict[str, asyncio.Future[None]] = {}  # reply message id -> acknowledged
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_job(self, frame: Frame) -> None:
        try:
            job = proto.parse_agent_job(frame.payload)
        except proto.MessageError as exc:
            log.warning("unreadable agent_job: %s", exc)
            await self._ack(str(frame.message_id), frame, ACK_UNREADABLE, str(exc))
            return
        if job.topic.startswith(rc.CANCEL_COMMAND_TOPIC):
            await self._ack(job.job_id, frame, ACK_OK)
            self._cancel(job)
        elif job.topic.startswith(rc.SEND_COMMAND_TOPIC):
            await self._ack(job.job_id, frame, ACK_OK)
            self._start(job)
        else:
            await self._ack(job.job_id, frame, ACK_UNREADABLE, f"unknown topic {job.topic}")

    def on_reply_ack(self, frame: Frame) -> None:
        try:
            ack = proto.parse_agent_job_reply_ack(frame.payload)
        except proto.MessageError as exc:
            log.info("unreadable agent_job_reply_ack: %s", exc)
            return
        waiter = self._acks.get(ack.acknowledged_message_id)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def stop(self) -> None:
        for signal_stop in self._running.values():
            signal_stop.set()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=KILL_GRACE_SECONDS * 3)

    # -- internals ---------------------------------------------------------------------------------

    async def _ack(self, job_id: str, frame: Frame, status: str, error: str = "") -> None:
        ack = proto.AgentJobAck(job_id, str(frame.message_id), status, error)
        await self._control.send(ack.to_frame(), wait_connected=0)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _remember(self, job_id: str) -> bool:
        """False if the job was seen before (the service may deliver it twice)."""
        if job_id in self._seen:
            return False
        self._seen[job_id] = None
        while len(self._seen) > REMEMBERED_JOBS:
            self._seen.popitem(last=False)
        return True

    def _start(self, job: proto.AgentJob) -> None:
        if not self._remember(job.job_id):
            log.info("job %s already received; ignoring the repeat", job.job_id)
            return
        stop = asyncio.Event()
        self._running[job.job_id] = stop
        self._spawn(self._run(job, stop), f"job-{job.job_id}")

    def _cancel(self, job: proto.AgentJob) -> None:
        try:
            target = rc.parse_cancel_command(job.content)
        except rc.RunCommandError as exc:
            log.warning("unreadable cancelCommand: %s", exc)
            return
        stop = self._running.get(target)
        if stop is not None:
            stop.set()
        elif self._remember(target):  # never started here: it ends cancelled, and will not start later
            self._spawn(self._reply(target, "Cancelled", []), f"cancelled-{target}")

    async def _run(self, job: proto.AgentJob, stop: asyncio.Event) -> None:
        try:
            await self._reply(job.job_id, "InProgress", [], wait_for_ack=False)
            try:
                command = rc.parse_send_command(job.content)
            except rc.RunCommandError as exc:
                now = proto.iso_millis()
                failure = rc.StepResult(
                    "document", rc.RUN_SHELL_SCRIPT_ACTION, "Failed", 1, "", str(exc), now, now
                )
                await self._reply(job.job_id, "Failed", [failure])
                return
            log.info(
                "running command %s (%s, %d steps)",
                command.command_id,
                command.document_name,
                len(command.steps),
            )
            results = await run_command(command, stop)
            await self._reply(job.job_id, document_status(results), results)
        finally:
            self._running.pop(job.job_id, None)

    async def _reply(
        self, job_id: str, status: str, steps: list[rc.StepResult], *, wait_for_ack: bool = True
    ) -> None:
        content = rc.send_reply_payload(
            document_status=status, steps=steps, date_time=proto.iso_millis(), agent_version=AGENT_VERSION
        )
        frame = proto.AgentJobReply(job_id, content, rc.SEND_COMMAND_TOPIC).to_frame()
        message_id = str(frame.message_id)
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[message_id] = acked
        try:
            for _attempt in range(REPLY_ATTEMPTS if wait_for_ack else 1):
                if await self._control.send(frame, wait_connected=self.settings.reconnect_max_seconds):
                    if not wait_for_ack:
                        return
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(REPLY_RETRY_SECONDS):
                            await asyncio.shield(acked)
                if acked.done():
                    return
            log.warning("agent_job_reply %s for %s was not acknowledged", status, job_id)
        finally:
            self._acks.pop(message_id, None)
