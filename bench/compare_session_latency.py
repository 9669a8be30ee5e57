"""Session start-up latency of the working tree against another git revision, the whole system side
by side: REV's server, agent and client beside the working tree's, in one run.

`bench_session_latency.py --client-rev` swaps only the client; a change on the server's side (its
database work, the audit trail, the gateway's pairing) needs the other revision's server and agent
too. This starts both systems (REV's from a temporary git worktree put first on PYTHONPATH, which
its processes inherit) and has them take turns: in each round, `openssm start-session` from process
start to the first prompt byte and the in-process client's StartSession → first byte, on REV's
system, then on the working tree's. Medians, ranges and each side's steps are printed as
`bench_session_latency.py` prints them (a server that logs no database trace shows no server steps).

Then keystroke echo, the systems taking turns for ``--echo-rounds`` rounds of ``--keys`` keystrokes:
through `openssm start-session` (client → gateway → agent PTY and back) and through the bench's
minimal in-process client (gateway + agent only); each round's p50 and p99, their ranges over the
rounds, and REV's over the working tree's as a ratio. Beside them, per keystroke, the server's and
the agent's time on a CPU and their context switches (every thread's, from /proc: schedstat in ns,
voluntary + involuntary switches, each a wait for input or for a CPU): far less sensitive to the
machine's load than the round trip, whose median on a shared 2-core machine is mostly waiting for
a CPU at each of the processes on the way.

`--browser` adds the browser console (Playwright on /usr/bin/chromium, as `bench_session_latency.py`
measures it: click on "Start session" to the prompt in the terminal, a returning user with a warm
cache) to each round, on each system, and prints the working tree's over REV's round by round.
`--only-browser` runs just that (and no echo).

Run: `.venv/bin/python bench/compare_session_latency.py REV [--sessions 8] [--echo-rounds 3] [--keys 200]
[--browser | --only-browser]`
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import pathlib
import pwd
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import bench_session_latency as latency
from tests.e2e.harness import Agent, Server
from tests.support.stats import percentile

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


def shell_echo(
    ctx: latency.Context, source: pathlib.Path | None, keys: int, around: latency.Around
) -> list[float]:
    client = latency.openssm_shell(ctx, ctx.workdir / "trace-echo", source)
    client.first_byte_after(latency.STARTING)  # the shell is up: typeahead before it may be lost
    try:
        return latency.echo_rtts(client, keys, around=around)
    finally:
        client.finish(b"\x03")


IDLE_SAMPLE = 1.0  # seconds: how long per_key watches the processes idle


def task_stats(pid: int) -> tuple[int, int]:
    """Nanoseconds on a CPU and context switches of process ``pid``, summed over its threads."""
    cpu = switches = 0
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            cpu += int((task / "schedstat").read_text().split()[0])
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return cpu, switches


@contextlib.contextmanager
def per_key(ctx: latency.Context, keys: int, into: dict[str, list[float]]) -> Iterator[None]:
    """The server's and the agent's CPU (µs) and context switches per keystroke over the block,
    less what they spend with the session open and idle (their timers, heartbeats, the server's
    background work), watched for IDLE_SAMPLE seconds just before it and scaled to its length."""
    pids = {"server": ctx.server.process.proc.pid, "agent": ctx.agent.process.proc.pid}  # type: ignore[union-attr]
    before = {name: task_stats(pid) for name, pid in pids.items()}
    time.sleep(IDLE_SAMPLE)
    idle = {name: task_stats(pid) for name, pid in pids.items()}
    started = time.monotonic()
    yield
    scale = (time.monotonic() - started) / IDLE_SAMPLE
    for name, pid in pids.items():
        after = task_stats(pid)
        cpu, switches = (
            (now - then) - (then - first) * scale
            for now, then, first in zip(after, idle[name], before[name], strict=True)
        )
        into.setdefault(f"{name} CPU µs", []).append(cpu / 1000 / keys)
        into.setdefault(f"{name} switches", []).append(switches / keys)


def report_costs(costs: dict[str, dict[str, dict[str, list[float]]]]) -> None:
    if not costs:
        return
    print("\nPer keystroke, server and agent processes, idle cost taken out: median [range over rounds]")
    for kind, systems in costs.items():
        for name, figures in systems.items():
            cells = [
                f"{figure} {statistics.median(values):6.1f} [{min(values):.1f}-{max(values):.1f}]"
                for figure, values in figures.items()
            ]
            print(f"  {kind} {name}: " + "   ".join(cells))


def report_echo(echo: dict[str, dict[str, list[list[float]]]]) -> None:
    """Per way in (kind) and system: the median of the rounds' p50 and p99 with their ranges; the
    working tree's also as a ratio to REV's, round by round (the rounds ran side by side)."""
    if not echo:
        return
    print("\nKeystroke echo round trip (ms): median of the rounds' p50 / p99 [range over rounds]")
    width = max(len(kind) + len(name) for kind, systems in echo.items() for name in systems) + 3
    for kind, systems in echo.items():
        first: list[float] | None = None
        for name, rounds in systems.items():
            p50s = [percentile(samples, 0.5) * 1000 for samples in rounds]
            p99s = [percentile(samples, 0.99) * 1000 for samples in rounds]
            line = (
                f"  {kind + ' ' + name:<{width}} p50 {statistics.median(p50s):6.2f} "
                f"[{min(p50s):5.2f}-{max(p50s):5.2f}]   p99 {statistics.median(p99s):6.2f} "
                f"[{min(p99s):5.2f}-{max(p99s):5.2f}]"
            )
            if first is None:
                first = p50s
            else:
                ratios = [now / then for now, then in zip(p50s, first, strict=True)]
                line += (
                    f"   p50 {statistics.median(ratios):4.2f}x the first's "
                    f"[{min(ratios):4.2f}-{max(ratios):4.2f}]"
                )
            print(line)


def browser_run(browser: latency.Browser) -> latency.Run:
    """One click → prompt, with the server's and the agent's CPU time over it (and over the way
    back to the nodes page, which each click starts from)."""
    pids = (browser.ctx.server.process.proc.pid, browser.ctx.agent.process.proc.pid)  # type: ignore[union-attr]
    before = [latency.process_cpu(pid) for pid in pids]
    run = browser.run()
    time.sleep(0.2)  # the session's end, on the server's and the agent's side
    run.server_cpu, run.agent_cpu = (
        latency.process_cpu(pid) - b for pid, b in zip(pids, before, strict=True)
    )
    return run


def report_ratios(results: dict[str, list[latency.Run]]) -> None:
    """Per way in measured on both systems: the working tree's time over REV's, round by round (the
    whole way and each step both sides marked in every round), and the server's CPU time."""
    ways = [name.removesuffix(" [working tree]") for name in results if name.endswith(" [working tree]")]
    lines = []
    for way in ways:
        pair = [runs for name, runs in results.items() if name.startswith(way + " [")]
        if len(pair) != 2:
            continue
        then, now = pair  # REV ran first
        rounds = list(zip(then, now, strict=True))
        measures: dict[str, list[tuple[float, float]]] = {
            "first prompt byte": [(a.total, b.total) for a, b in rounds]
        }
        steps = [step for step in then[0].steps if all(step in run.steps for run in then + now)]
        measures.update({step: [(a.steps[step], b.steps[step]) for a, b in rounds] for step in steps})
        if all(run.cpu for run in then + now):
            measures["client CPU"] = [(a.cpu or 0, b.cpu or 0) for a, b in rounds]
        if all(run.server_cpu for run in then + now):
            measures["server CPU (whole session)"] = [
                (a.server_cpu or 0, b.server_cpu or 0) for a, b in rounds
            ]
        lines.append(f"  {way}")
        for measure, pairs in measures.items():
            ratios = [new / old for old, new in pairs if old > 0]
            if ratios:
                lines.append(
                    f"    {measure:<42} {statistics.median(ratios):5.2f}x  [{min(ratios):4.2f} - {max(ratios):4.2f}]"
                )
    if lines:
        print("\nWorking tree ÷ REV, round by round: median [min - max] (each step: time since the start)")
        print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rev", help="the git revision to compare with")
    parser.add_argument("--sessions", type=int, default=8, help="rounds (default 8)")
    parser.add_argument("--run-as", help="account the sessions run as (as bench_session_latency.py)")
    parser.add_argument("--echo-rounds", type=int, default=3, help="rounds of keystroke echo (default 3)")
    parser.add_argument("--keys", type=int, default=200, help="keystrokes per echo round (default 200)")
    parser.add_argument("--browser", action="store_true", help="add the browser console (click → prompt)")
    parser.add_argument("--only-browser", action="store_true", help="only the browser console, no echo")
    args = parser.parse_args()
    account = latency.pick_account(args.run_as)
    browser = args.browser or args.only_browser
    results: dict[str, list[latency.Run]] = {}
    echo: dict[str, dict[str, list[list[float]]]] = {}
    costs: dict[str, dict[str, dict[str, list[float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp, latency.client_revision(args.rev) as sources:
        root = pathlib.Path(tmp)
        os.chmod(root, 0o711)
        systems: dict[str, tuple[latency.Context, pathlib.Path | None]] = {}
        browsers: dict[str, latency.Browser] = {}
        launched = contextlib.ExitStack()
        try:
            for number, (label, source) in enumerate(reversed(sources.items())):  # REV first
                name = label.strip() or "[working tree]"
                systems[name] = (start_system(root / str(number), source, account), source)
            if browser:
                chromium = launched.enter_context(latency.chromium())
                browsers = {name: latency.Browser(ctx, chromium) for name, (ctx, _) in systems.items()}
            for _ in range(args.sessions):
                for name, (ctx, source) in systems.items():
                    if browser:
                        results.setdefault(f"browser {name}", []).append(browser_run(browsers[name]))
                    if args.only_browser:
                        continue
                    ssm = ctx.server.client("ssm")
                    results.setdefault(f"openssm start-session {name}", []).append(
                        latency.run_openssm(ctx, source)
                    )
                    run, _ = latency.in_thread(latency.in_process_session(ssm, ctx.instance_id, 0, ctx.logs))
                    results.setdefault(f"in-process {name}", []).append(run)
            for _ in range(0 if args.only_browser else args.echo_rounds):
                for name, (ctx, source) in systems.items():
                    shell = echo.setdefault("openssm start-session", {})
                    around = functools.partial(
                        per_key,
                        ctx,
                        args.keys,
                        costs.setdefault("openssm start-session", {}).setdefault(name, {}),
                    )
                    shell.setdefault(name, []).append(shell_echo(ctx, source, args.keys, around))
                    ssm = ctx.server.client("ssm")
                    around = functools.partial(
                        per_key,
                        ctx,
                        args.keys,
                        costs.setdefault("in-process client", {}).setdefault(name, {}),
                    )
                    _, samples = latency.in_thread(
                        latency.in_process_session(ssm, ctx.instance_id, args.keys, ctx.logs, around)
                    )
                    in_process = echo.setdefault("in-process client", {})
                    in_process.setdefault(name, []).append(samples)
        finally:
            for name, opened in browsers.items():
                opened.close()
                opened.report_requests(f"browser {name}")
            launched.close()
            for ctx, _ in systems.values():
                ctx.agent.stop()
                ctx.server.stop()
    print(f"{args.sessions} rounds; {os.cpu_count()} CPUs, shared with whatever else runs")
    latency.report(results, floor="")  # no floor: the sides are read against each other
    report_ratios(results)
    report_echo(echo)
    report_costs(costs)
    for name, (ctx, _) in systems.items():
        if ctx.logs.db_work:
            print(f"\n{name}:", end="")
            ctx.logs.report()
        else:
            print(f"\n{name}: no database trace (the revision predates OPENSSM_DB_TRACE)")


if __name__ == "__main__":
    main()
