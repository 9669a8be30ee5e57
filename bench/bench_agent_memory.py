"""The OpenSSM agent's memory when idle: registered with a real ``openssm server``, Online, no session.

A fresh server (SQLite; plain HTTP, and with ``--tls`` also HTTPS with a self-signed certificate the
agent trusts, as real agents connect), one agent registered and started with ``openssm agent run``
(the same process a node runs), waited for until Online, then left idle for ``--idle-seconds``
(heartbeats and control-channel pings go on). Its resident memory (``VmRSS``, with the anonymous
part: what the process itself allocated) is printed beside the issue's target (≤ 30 MB) and beside
a bare ``python -c 'import asyncio'`` started the same way, measured in the same run; ``--repeat``
agents are started one after the other and the figures given as ranges.

The agent's interpreter imports a small ``sitecustomize`` (``PYTHONPATH``) that, on SIGUSR1, writes
the top-level packages it has imported: botocore and aiohttp must not be among them at idle.

With ``--compare-src`` (the ``src`` of another checkout, e.g. main's from ``git archive``), an
agent of that tree is started after each of this tree's, against the same server, for before/after
figures from one run.

Run: ``.venv/bin/python bench/bench_agent_memory.py`` (``--tls``, ``--repeat 5``, ``--compare-src DIR``).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.e2e.harness import Agent, Server
from tests.support.tls import self_signed
from tests.support.wait import wait_until

TARGET_MB = 30.0
MB = 1024 * 1024

# On SIGUSR1, write the top-level names of the imported modules to $BENCH_MODULES_FILE.
SITECUSTOMIZE = """
import os, signal, sys
if os.environ.get("BENCH_MODULES_FILE"):
    def _dump(signum, frame):
        path = os.environ["BENCH_MODULES_FILE"]
        with open(path + ".tmp", "w") as out:
            out.write("\\n".join(sorted({name.split(".")[0] for name in list(sys.modules)})))
        os.rename(path + ".tmp", path)
    signal.signal(signal.SIGUSR1, _dump)
"""

# Packages the idle agent should not have loaded (they belong to sessions or to other commands).
NOT_AT_IDLE = ("botocore", "boto3", "aiohttp", "yaml", "cryptography", "click")


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, RssAnon) in MB."""
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["RssAnon"].split()[0]) / 1024


def baseline(code: str) -> tuple[float, float]:
    """RSS of a bare interpreter running ``code`` and then waiting, started as the agent is."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code + "\nimport sys; sys.stdout.write('ready\\n'); sys.stdout.flush()\nsys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        return memory(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def agent_modules(pid: int, path: pathlib.Path) -> list[str]:
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    wait_until(path.exists, "the agent to list its modules", timeout=30)
    return path.read_text().split()


def run(
    args: argparse.Namespace, root: pathlib.Path, tls: bool
) -> dict[str, tuple[list[tuple[float, float]], list[str]]]:
    """Agents of this tree (and of ``--compare-src``'s, alternating) against one server: by name,
    their (RSS, anonymous) samples and the packages the last one had imported."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "site").mkdir(exist_ok=True)
    (root / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    modules_file = root / "modules.txt"
    saved = dict(os.environ)
    site = os.pathsep.join(filter(None, [str(root / "site"), saved.get("PYTHONPATH")]))
    os.environ["BENCH_MODULES_FILE"] = str(modules_file)
    trees: list[tuple[str, str | None]] = [("this tree", None)]
    if args.compare_src:
        trees.append((args.compare_src, args.compare_src))
    results: dict[str, tuple[list[tuple[float, float]], list[str]]] = {name: ([], []) for name, _ in trees}
    try:
        os.environ["PYTHONPATH"] = site
        if tls:
            cert, key = self_signed(root)
            os.environ["SSL_CERT_FILE"] = str(cert)
            os.environ["AWS_CA_BUNDLE"] = str(cert)
            server = Server(root / "server-tls", extra_args=("--tls-cert", str(cert), "--tls-key", str(key)))
            server.endpoint = server.endpoint.replace("http://", "https://")
            server.start()
        else:
            server = Server(root / "server").start()
        try:
            for index in range(args.repeat):
                for number, (name, src) in enumerate(trees):
                    # The agent (and its `register`) from that tree; the server stays this tree's.
                    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [src, site]))
                    agent = Agent(server, root / f"agent-{index}-{number}")
                    agent.register(f"bench-{index}-{number}")
                    agent.start()
                    try:
                        time.sleep(args.idle_seconds)
                        agent.wait_online()  # still Online after idling
                        assert agent.process is not None
                        results[name][0].append(memory(agent.process.proc.pid))
                        results[name][1][:] = agent_modules(agent.process.proc.pid, modules_file)
                    finally:
                        agent.stop()
        finally:
            server.stop()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return results


def mb_range(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} MB ({min(values):.1f} to {max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="agents started one after the other")
    parser.add_argument("--idle-seconds", type=float, default=15.0, help="idle time before measuring")
    parser.add_argument("--tls", action="store_true", help="also measure agents of an HTTPS server")
    parser.add_argument(
        "--compare-src",
        help="the src directory of another checkout (e.g. main's, from `git archive`): its agent is "
        "measured too, alternating with this tree's, against the same server",
    )
    args = parser.parse_args()
    # Baselines measured in the same run, started as the agent is (same interpreter and venv).
    bare = [baseline("import asyncio") for _ in range(args.repeat)]
    with tempfile.TemporaryDirectory(prefix="bench-agent-memory-") as tmp:
        root = pathlib.Path(tmp)
        runs = {"plain HTTP": run(args, root / "plain", tls=False)}
        if args.tls:
            runs["TLS"] = run(args, root / "tls", tls=True)
    bare_rss = [rss for rss, _ in bare]
    print(
        f"\nOpenSSM agent, idle, registered and Online ({args.repeat} agents each, {args.idle_seconds:g} s idle)"
    )
    print(
        f"  python -c 'import asyncio' (baseline): RSS {mb_range(bare_rss)}, anonymous {mb_range([a for _, a in bare])}"
    )
    for transport, results in runs.items():
        for name, (samples, modules) in results.items():
            rss = [value for value, _ in samples]
            ratio = statistics.median(rss) / statistics.median(bare_rss)
            print(
                f"  agent of {name}, {transport}: RSS {mb_range(rss)}, anonymous "
                f"{mb_range([a for _, a in samples])}; {ratio:.2f}x the baseline; target ≤ {TARGET_MB:g} MB"
            )
            loaded = [package for package in NOT_AT_IDLE if package in modules]
            print(
                f"    loaded at idle that should not be: {', '.join(loaded) or 'none'}; {len(modules)} packages"
            )


if __name__ == "__main__":
    main()
