"""Scale-out on loopback: several real `openssm server` nodes on one PostgreSQL database (fresh for
each cluster) and one Redis, sharing one master key."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import os
import pathlib
import secrets
import signal
from collections.abc import Iterator, Sequence

from tests.e2e.harness import Server
from tests.support.postgres import REDIS_URL, fresh_postgres_database, require_postgres_and_redis


def new_master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")


class Node(Server):
    """One scale-out server node: its own data dir, port, node id and public URL."""

    def __init__(
        self,
        data_dir: pathlib.Path,
        *,
        node_id: str,
        database_url: str,
        redis_url: str,
        master_key: str,
        server_args: tuple[str, ...] = (),
    ) -> None:
        env = {**os.environ, "OPENSSM_MASTER_KEY": master_key}
        args = ("--database-url", database_url, "--redis-url", redis_url, "--node-id", node_id, *server_args)
        super().__init__(data_dir, extra_args=args, env=env)
        self.node_id = node_id
        self.database_url = database_url

    def kill(self) -> None:
        """Crash the node: no shutdown, no clean-up of its sessions or heartbeat row."""
        if self.process is not None:
            self.process.stop(signal.SIGKILL)


def start_together(nodes: Sequence[Server]) -> None:
    """Start every node at the same moment (they race to migrate and bootstrap the database)."""
    with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
        for future in [pool.submit(node.start) for node in nodes]:
            future.result()


@contextlib.contextmanager
def running_cluster(
    tmp_path: pathlib.Path, size: int = 2, server_args: tuple[str, ...] = ()
) -> Iterator[list[Node]]:
    require_postgres_and_redis()
    master_key = new_master_key()
    # Node ids name the nodes' Redis bus channels: unique per cluster, so clusters of tests running
    # side by side (xdist workers share one Redis) never hear each other's messages.
    cluster = secrets.token_hex(3)
    with fresh_postgres_database() as database_url:
        nodes = [
            Node(
                tmp_path / f"node-{index}",
                node_id=f"node-{index}-{cluster}",
                database_url=database_url,
                redis_url=REDIS_URL,
                master_key=master_key,
                server_args=server_args,
            )
            for index in range(size)
        ]
        try:
            start_together(nodes)
            yield nodes
        finally:
            for node in nodes:
                node.stop()
