"""Session start-up latency of the working tree against another git revision, the whole system side
by side: REV's server, agent and client beside the working tree's, in one run.

`bench_session_latency.py --client-rev` swaps only the client; a change on the server's side (its
database work, the audit trail, the gateway's pairing) needs the other revision's server and agent
too. This starts both systems (REV's from a temporary git worktree put first on PYTHONPATH, which
its processes inherit) and has them take turns: in each round, `openssm start-session` from process
start to the first prompt byte and the in-process client's StartSession → first byte, on REV's
system, then on the working tree's. Medians, ranges and each side's steps are printed as
`bench_session_latency.py` prints them (a server that logs no database trace shows no server steps).

Run: `.venv/bin/python bench/compare_session_latency.py REV [--sessions 8]`
"""

from __future__ import annotations

import argparse
import os
import pathlib
import pwd
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import bench_session_latency as latency
from tests.e2e.harness import Agent, Server

from openssm.store.trace import TRACE_ENV


def start_system(
    root: pathlib.Path, source: pathlib.Path | None, account: pwd.struct_passwd
) -> latency.Context:
    """A server and an agent from ``source`` (None: the working tree), logging their steps."""
    env = {**os.environ, TRACE_ENV: "1"}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    server = Server(root / "server", env=env).start()
    agent = Agent(server, root / "agent")
    saved = os.environ.get("PYTHONPATH")
    try:  # the agent's processes take this process's environment
        if source is not None:
            os.environ["PYTHONPATH"] = str(source)
        instance_id = agent.register()
        agent.start()
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    latency.set_run_as(server, account)
    logs = latency.ProcessLogs(root / "agent" / "agent.log", root / "server" / "server.log")
    return latency.Context(server, agent, instance_id, account, None, root / "trace", logs, root)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rev", help="the git revision to compare with")
    parser.add_argument("--sessions", type=int, default=8, help="rounds (default 8)")
    parser.add_argument("--run-as", help="account the sessions run as (as bench_session_latency.py)")
    args = parser.parse_args()
    account = latency.pick_account(args.run_as)
    results: dict[str, list[latency.Run]] = {}
    with tempfile.TemporaryDirectory() as tmp, latency.client_revision(args.rev) as sources:
        root = pathlib.Path(tmp)
        os.chmod(root, 0o711)
        systems: dict[str, tuple[latency.Context, pathlib.Path | None]] = {}
        try:
            for number, (label, source) in enumerate(reversed(sources.items())):  # REV first
                name = label.strip() or "[working tree]"
                systems[name] = (start_system(root / str(number), source, account), source)
            for _ in range(args.sessions):
                for name, (ctx, source) in systems.items():
                    ssm = ctx.server.client("ssm")
                    results.setdefault(f"openssm start-session {name}", []).append(
                        latency.run_openssm(ctx, source)
                    )
                    run, _ = latency.in_thread(latency.in_process_session(ssm, ctx.instance_id, 0, ctx.logs))
                    results.setdefault(f"in-process {name}", []).append(run)
        finally:
            for ctx, _ in systems.values():
                ctx.agent.stop()
                ctx.server.stop()
    print(f"{args.sessions} rounds; {os.cpu_count()} CPUs, shared with whatever else runs")
    latency.report(results, floor="")  # no floor: the sides are read against each other
    for name, (ctx, _) in systems.items():
        if ctx.logs.db_work:
            print(f"\n{name}:", end="")
            ctx.logs.report()
        else:
            print(f"\n{name}: no database trace (the revision predates OPENSSM_DB_TRACE)")


if __name__ == "__main__":
    main()
