"""Port-forwarding throughput of the working tree against another git revision, side by side.

On a shared VM, `bench_port_throughput.py`'s figures move several points from one run to the next:
more than most single changes do. This runs that bench alternately against REV's `openssm` package
and the working tree's, `--runs` times each, and prints the medians of both sides for each path and
case. The bench, its harness and the destination are the working tree's on both sides; only the
package under test differs. REV is checked out in a temporary git worktree and put first on
PYTHONPATH, which the bench's server, agent and client processes inherit.

Four medians are printed per side:
- the ratio to direct TCP (with its range over the runs);
- MiB/s;
- the CPU seconds per GiB that the forwarding processes spent together (client, server and agent,
  or the bare relays);
- that CPU figure divided by the bare relays' in the same run and case, which takes out the drift
  that moves both alike (the machine's clock and neighbours), though not what moves them apart.

Know the noise before reading a difference: comparing the working tree with its own commit (the
same code on both sides, 4 runs each, 2-core VM) gave up to ±11 % on raw CPU per GiB and up to
±8 % on the relative figure. A change of a few per cent needs many more runs to show.

The bare relays and direct TCP run the same code on both sides, so their differences show how
much the machine alone moves the figures. The sides take turns going first (ABBA...), so that
whatever the first run of a pair gains or loses is shared out.

Run: `.venv/bin/python bench/compare_port_throughput.py REV [--runs 4] [-- BENCH OPTIONS]`,
e.g. `bench/compare_port_throughput.py HEAD~3 -- --size-mib 512 --no-ssh --parallel 1`
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "bench_port_throughput.py"
BASELINE = "direct TCP"
YARDSTICK = "3 bare relays"  # the same on both sides: what the machine alone does to CPU figures
MEASURING_ENDS = "checksum ends"  # the bench's own processes, not part of the path under test

BenchResult = dict[str, Any]  # one path and case, as bench_port_throughput.py --json writes it


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def run_bench(package_src: pathlib.Path, bench_args: list[str], output: pathlib.Path) -> list[BenchResult]:
    env = dict(os.environ, PYTHONPATH=str(package_src))
    done = subprocess.run(
        [sys.executable, str(BENCH), *bench_args, "--json", str(output)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"the bench failed against {package_src}:\n{done.stdout}\n{done.stderr}")
    results: list[BenchResult] = json.loads(output.read_text())
    return results


def forwarding_cpu(result: BenchResult) -> float | None:
    cpu = {name: value for name, value in result["cpu_per_gib"].items() if name != MEASURING_ENDS}
    return sum(cpu.values()) if cpu else None


def record(figures: dict[tuple[str, str], dict[str, list[float]]], results: list[BenchResult]) -> None:
    """File one bench run's results: ratio, MiB/s, CPU per GiB, and CPU against the yardstick's."""
    yardstick = {
        result["case"]: spent
        for result in results
        if result["path"] == YARDSTICK and (spent := forwarding_cpu(result))
    }
    for result in results:
        slot = figures[(result["path"], result["case"])]
        slot["ratio"].append(result["vs_direct"])
        slot["mib"].append(result["mib_per_s"])
        if (spent := forwarding_cpu(result)) is not None:
            slot["cpu"].append(spent)
            if result["case"] in yardstick:
                slot["vs_yardstick"].append(spent / yardstick[result["case"]])


def ratios(values: list[float]) -> str:
    """Median and range, e.g. `32.8% (30-35%)`."""
    return f"{statistics.median(values):6.1%} ({min(values):.0%}-{max(values):.0%})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rev", help="the git revision to compare the working tree against")
    parser.add_argument("--runs", type=int, default=4, help="bench runs per side, alternating")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])  # the rest, after --, is the bench's
    bench_args = argv[split + 1 :]
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    commit = git("rev-parse", "--verify", f"{args.rev}^{{commit}}")

    # side → (path, case) → figure → values
    figures: dict[str, dict[tuple[str, str], dict[str, list[float]]]] = {
        side: defaultdict(lambda: defaultdict(list)) for side in ("rev", "tree")
    }
    with tempfile.TemporaryDirectory() as tmp:
        worktree = pathlib.Path(tmp) / "rev"
        git("worktree", "add", "--detach", str(worktree), commit)
        try:
            sources = {"rev": worktree / "src", "tree": ROOT / "src"}
            for run in range(1, args.runs + 1):
                order = ("rev", "tree") if run % 2 else ("tree", "rev")
                for side in order:
                    print(
                        f"run {run}/{args.runs}: {args.rev if side == 'rev' else 'working tree'}", flush=True
                    )
                    results = run_bench(sources[side], bench_args, pathlib.Path(tmp) / f"{side}.json")
                    record(figures[side], results)
        finally:
            git("worktree", "remove", "--force", str(worktree))

    print(f"\nmedians of {args.runs} runs each, {args.rev} ({commit[:10]}) → working tree\n")
    print(
        f"{'path':<14} {'case':<20} {'vs direct (range)':>36} {'MiB/s':>16} {'CPU s/GiB':>22}"
        f" {'CPU / bare relays':>24}"
    )
    for key, before in figures["rev"].items():
        after = figures["tree"][key]
        ratio = "baseline" if key[0] == BASELINE else f"{ratios(before['ratio'])} → {ratios(after['ratio'])}"
        mib = f"{statistics.median(before['mib']):6.0f} → {statistics.median(after['mib']):6.0f}"
        cpu = change(before["cpu"], after["cpu"])
        relative = change(before["vs_yardstick"], after["vs_yardstick"]) if key[0] != YARDSTICK else ""
        print(f"{key[0]:<14} {key[1]:<20} {ratio:>36} {mib:>16} {cpu:>22} {relative:>24}")


def change(before: list[float], after: list[float]) -> str:
    """Medians before → after, and the change, e.g. `3.95 →  3.73 (-6%)`; empty without figures."""
    if not before or not after:
        return ""
    old, new = statistics.median(before), statistics.median(after)
    return f"{old:5.2f} → {new:5.2f} ({new / old - 1:+.0%})"


if __name__ == "__main__":
    main()
