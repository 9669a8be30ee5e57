"""Server-side session logging end to end: real server, agent and client; real S3 and CloudWatch Logs
protocol servers (moto, server mode) on loopback.

The sinks get their endpoints and credentials the standard AWS way (``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS``, ``AWS_ACCESS_KEY_ID`` …) in the server's environment.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

import pexpect
import pytest
from tests.e2e.harness import Agent, Server, openssm_argv, running_system, wait_until
from tests.integration.logs_support import (
    SINK_CREDENTIALS,
    TcpRelay,
    moto_server,
    s3_text,
    session_events,
    session_lines,
)

from openssm.logs.asciicast import read_cast

# Each test runs moto, a server, an agent and a client as processes: on a loaded 2-core machine the
# whole takes minutes, not the suite's default 120 s bound on one test. Every wait inside has its
# own deadline; this is the bound on a hang.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

BUCKET = "audit"
PREFIX = "sessions"
GROUP = "/openssm/sessions"
PROMPT = r"[#$] "


def _sink_environment(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", endpoint)
    for name, value in SINK_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


def _set_preferences(server: Server, **inputs: Any) -> None:
    content = {"schemaVersion": "1.0", "sessionType": "Standard_Stream", "inputs": inputs}
    server.client("ssm").update_document(
        Name="SSM-SessionManagerRunShell", Content=json.dumps(content), DocumentVersion="$LATEST"
    )


def _start_shell(server: Server, agent: Agent) -> tuple[pexpect.spawn, str]:
    assert agent.instance_id
    argv = openssm_argv("start-session", "--target", agent.instance_id, "--endpoint-url", server.endpoint)
    child = pexpect.spawn(
        argv[0], argv[1:], env=server.aws_env(), dimensions=(24, 80), timeout=30, encoding="utf-8"
    )
    child.expect(r"Starting session with SessionId: (\S+)")
    session_id = child.match.group(1).strip().rstrip(".")
    child.expect(PROMPT)
    return child, session_id


def _end_shell(child: pexpect.spawn) -> None:
    child.sendline("exit")
    child.expect(pexpect.EOF)
    child.close()


def _output_url(server: Server, session_id: str) -> dict[str, str]:
    history = server.client("ssm").describe_sessions(
        State="History", Filters=[{"key": "SessionId", "value": session_id}]
    )["Sessions"]
    return dict(history[0].get("OutputUrl", {})) if history else {}


def _list_logs(server: Server) -> str:
    return subprocess.run(
        openssm_argv("logs", "--data-dir", str(server.data_dir)),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


def test_shell_session_streams_to_cloudwatch_while_running_and_lands_in_s3(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with moto_server(tmp_path) as moto:
        s3, logs = moto.client("s3"), moto.client("logs")
        s3.create_bucket(Bucket=BUCKET)
        logs.create_log_group(logGroupName=GROUP)
        for name, value in SINK_CREDENTIALS.items():  # credentials: the normal AWS chain
            monkeypatch.setenv(name, value)
        # Endpoints: the server's options (the outage test below uses AWS_ENDPOINT_URL_* instead).
        sink_options = ("--s3-endpoint-url", moto.endpoint, "--logs-endpoint-url", moto.endpoint)
        with running_system(tmp_path, server_args=sink_options) as (server, agent):
            _set_preferences(
                server,
                s3BucketName=BUCKET,
                s3KeyPrefix=PREFIX,
                cloudWatchLogGroupName=GROUP,
                cloudWatchStreamingEnabled=True,
            )
            child, session_id = _start_shell(server, agent)
            child.sendline("echo streamed-$((6*7))")
            child.expect("streamed-42")

            # In CloudWatch Logs while the session still runs; S3 gets its copy at the end.
            wait_until(
                lambda: "streamed-42" in session_lines(logs, GROUP, session_id),
                "the output line in the log group while the session runs",
                timeout=60,
            )
            active = server.client("ssm").describe_sessions(State="Active")["Sessions"]
            assert session_id in {s["SessionId"] for s in active}
            assert s3_text(s3, BUCKET, f"{PREFIX}/{session_id}.log") is None

            _end_shell(child)
            wait_until(
                lambda: "streamed-42" in (s3_text(s3, BUCKET, f"{PREFIX}/{session_id}.log") or ""),
                "the transcript in the bucket",
                timeout=30,
            )
            # The recording is an upload of its own: under load it may land after the transcript.
            wait_until(
                lambda: s3_text(s3, BUCKET, f"{PREFIX}/{session_id}.cast") is not None,
                "the recording in the bucket",
                timeout=30,
            )
            cast_text = s3_text(s3, BUCKET, f"{PREFIX}/{session_id}.cast")
            assert cast_text is not None
            header, events = read_cast(cast_text)
            assert header["version"] == 2 and (header["width"], header["height"]) == (80, 24)
            assert "streamed-42" in "".join(data for _, code, data in events if code == "o")

            wait_until(lambda: len(_output_url(server, session_id)) == 2, "OutputUrl in describe-sessions")
            urls = _output_url(server, session_id)
            assert urls["S3OutputUrl"] == f"s3://{BUCKET}/{PREFIX}/{session_id}.log"
            assert urls["CloudWatchOutputUrl"].endswith(f":log-group:{GROUP}:log-stream:{session_id}")

            # The real AWS CLI reads the same OutputUrl.
            aws = str(pathlib.Path(sys.executable).parent / "aws")
            described = subprocess.run(
                [aws, "ssm", "describe-sessions", "--state", "History", "--endpoint-url", server.endpoint],
                env=server.aws_env(),
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            [cli_session] = [s for s in json.loads(described)["Sessions"] if s["SessionId"] == session_id]
            assert cli_session["OutputUrl"] == urls

            messages = session_lines(logs, GROUP, session_id)
            assert messages.count("streamed-42") == 1  # streamed, then completed: never twice
            assert any(m.endswith("exit") for m in messages)
            # Each event is AWS's JSON session event: who, where, and the lines.
            first = session_events(logs, GROUP, session_id)[0]
            assert list(first) == [
                "eventVersion",
                "eventTime",
                "awsRegion",
                "target",
                "userIdentity",
                "runAsUser",
                "sessionId",
                "sessionData",
            ]
            assert first["eventVersion"] == "1.0" and first["awsRegion"] == server.region
            assert first["target"] == {"id": agent.instance_id} and first["sessionId"] == session_id
            assert first["userIdentity"]["arn"].endswith(":user/admin")
            assert first["eventTime"].endswith("Z") and len(first["eventTime"]) == 20

            # The local sink holds the same record, and `openssm logs` reads it.
            local = server.data_dir / "sessions"
            assert {p.name.removeprefix(session_id) for p in local.glob(f"{session_id}.*")} == {
                ".cast",
                ".log",
                ".log.times",
                ".jsonl",
            }
            printed = subprocess.run(
                openssm_argv("logs", session_id, "--data-dir", str(server.data_dir)),
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            assert "streamed-42" in printed.splitlines()
            replayed = subprocess.run(
                openssm_argv(
                    "logs", session_id, "--data-dir", str(server.data_dir), "--replay", "--speed", "50"
                ),
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            assert "\nstreamed-42\n" in replayed  # universal newlines turned \r\n into \n


def test_a_sink_outage_during_a_session_loses_nothing(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with moto_server(tmp_path) as moto:
        s3, logs = moto.client("s3"), moto.client("logs")
        s3.create_bucket(Bucket=BUCKET)
        logs.create_log_group(logGroupName=GROUP)
        relay = TcpRelay(moto.port)
        _sink_environment(monkeypatch, relay.endpoint)
        with running_system(tmp_path, server_args=("--log-upload-retry", "1")) as (server, agent):
            _set_preferences(
                server,
                s3BucketName=BUCKET,
                s3KeyPrefix=PREFIX,
                cloudWatchLogGroupName=GROUP,
                cloudWatchStreamingEnabled="true",
            )
            child, session_id = _start_shell(server, agent)
            child.sendline("echo before-$((1+1))")
            child.expect("before-2")
            wait_until(
                lambda: "before-2" in session_lines(logs, GROUP, session_id),
                "first line streamed",
                timeout=60,
            )

            relay.cut()  # S3 and CloudWatch Logs are unreachable from here on
            child.sendline("echo during-$((2+2)); seq 1 1500")
            child.expect("during-4")
            child.expect(r"\n1500\r*\n")
            child.expect(PROMPT)
            _end_shell(child)
            wait_until(
                lambda: server.client("ssm").describe_sessions(
                    State="History", Filters=[{"key": "SessionId", "value": session_id}]
                )["Sessions"],
                "session ended",
            )

            # The shipper tries and fails meanwhile: the session list says so, for both sinks.
            def both_failing() -> bool:
                listing = _list_logs(server)  # where each record of the session is going
                return (
                    "failed attempts" in listing
                    and f"s3://{BUCKET}/{PREFIX}/{session_id}.log (pending, " in listing
                    and f"CloudWatch Logs {GROUP} (pending, " in listing
                )

            wait_until(both_failing, "failed uploads of both sinks in the session list", timeout=60)
            assert "during-4" not in session_lines(logs, GROUP, session_id)
            assert s3_text(s3, BUCKET, f"{PREFIX}/{session_id}.log") is None
            assert _output_url(server, session_id) == {}
            assert "retrying in" in (server.data_dir / "server.log").read_text()

            relay.restore()
            wait_until(
                lambda: "1500" in (s3_text(s3, BUCKET, f"{PREFIX}/{session_id}.log") or ""),
                "the transcript in the bucket after the outage",
                timeout=90,
            )
            wait_until(lambda: len(_output_url(server, session_id)) == 2, "both uploads complete", timeout=90)
            wait_until(  # the recording is an upload of its own, perhaps a retry behind
                lambda: f"s3://{BUCKET}/{PREFIX}/{session_id}.cast (done)" in _list_logs(server),
                "the recording uploaded",
                timeout=90,
            )
            messages = session_lines(logs, GROUP, session_id)
            assert messages.count("before-2") == 1 and messages.count("during-4") == 1
            numbers = [m for m in messages if m.isdigit()]
            assert numbers == [str(n) for n in range(1, 1501)]
            listing = _list_logs(server)
            assert f"s3://{BUCKET}/{PREFIX}/{session_id}.cast (done)" in listing
            assert f"CloudWatch Logs {GROUP} (done)" in listing
            transcript = s3_text(s3, BUCKET, f"{PREFIX}/{session_id}.log") or ""
            assert transcript.splitlines().count("during-4") == 1
            assert [line for line in transcript.splitlines() if line.isdigit()] == numbers
