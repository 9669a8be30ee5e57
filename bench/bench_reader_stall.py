"""A reader stopped for 10 minutes while the other end pushes 1 GiB (issue 15, "Reader stalls").

Real `openssm server`, `openssm agent` and `openssm start-session` processes (tests/e2e/harness.py)
and one port session. Both readers stop at once, the local client's and the destination's, for
``--stall-seconds`` while each side pushes ``--size-mib`` at the other; then they read on. Prints the
transfer checked by SHA-256 at both ends, and each process group's peak memory (RSS) above what
it was before the transfer: the bound is 64 MiB, which holds only if back-pressure reaches the
sender instead of a process buffering the backlog. `tests/e2e/test_faults_stall.py` is the same
check shortened for CI (30 s, 256 MiB).

Run: `.venv/bin/python bench/bench_reader_stall.py [--stall-seconds 600] [--size-mib 1024]`
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.e2e.forwarding import ChecksumServer
from tests.e2e.harness import running_system
from tests.e2e.test_faults_stall import MIB, RSS_BOUND, describe, stalled_transfer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stall-seconds", type=float, default=600.0)
    parser.add_argument("--size-mib", type=int, default=1024, help="each way")
    args = parser.parse_args()
    size = args.size_mib * MIB
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_system(pathlib.Path(tmp)) as (server, agent),
        ChecksumServer() as destination,
    ):
        result = stalled_transfer(server, agent, destination, size, args.stall_seconds)
    print(describe(result, args.stall_seconds, size))
    report = result.report
    exact = report.client_sent == report.server_received and report.server_sent == report.client_received
    bounded = all(grown <= RSS_BOUND for grown in result.growth.values())
    print(f"bytes exact: {exact}; every process within the bound: {bounded}")
    sys.exit(0 if exact and bounded else 1)


if __name__ == "__main__":
    main()
