"""Real S3 / CloudWatch Logs protocol servers for the logging tests: moto in server mode on loopback,
and a TCP relay in front of it that a test can cut and restore to stage a sink outage."""

from __future__ import annotations

import contextlib
import json
import pathlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import boto3
from tests.e2e.harness import wait_until
from tests.support.net import free_port

REGION = "us-east-1"
SINK_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "sink-test", "AWS_SECRET_ACCESS_KEY": "sink-test-secret"}


class MotoServer:
    def __init__(self, log_path: pathlib.Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_until(self._listening, "moto server", timeout=30)

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError("moto server exited")
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            return True

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=SINK_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=SINK_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@contextlib.contextmanager
def moto_server(tmp_path: pathlib.Path) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path / "moto.log")
    try:
        yield server
    finally:
        server.stop()


class TcpRelay:
    """Forwards a loopback port to a target port; ``cut()`` closes everything (connections refused),
    ``restore()`` listens again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._acceptor: threading.Thread | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._acceptor.start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        if self._acceptor is not None:  # cut means cut: no connection is accepted from here on
            self._acceptor.join(5)
            assert not self._acceptor.is_alive(), "the relay's acceptor outlived its listener"

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._connections += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


def log_messages(logs: Any, group: str, stream: str) -> list[str]:
    try:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    except logs.exceptions.ResourceNotFoundException:
        return []
    return [event["message"] for event in events]


def session_events(logs: Any, group: str, stream: str) -> list[dict[str, Any]]:
    """A streamed session's events: AWS's JSON session events, parsed."""
    return [json.loads(message) for message in log_messages(logs, group, stream)]


def session_lines(logs: Any, group: str, stream: str) -> list[str]:
    """The transcript lines a streamed session's JSON events carry, in order."""
    return [line for event in session_events(logs, group, stream) for line in event["sessionData"]]


def s3_text(s3: Any, bucket: str, key: str) -> str | None:
    try:
        return str(s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8"))
    except s3.exceptions.NoSuchKey:
        return None
