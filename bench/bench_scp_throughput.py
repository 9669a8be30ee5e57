"""scp throughput through Session Manager, measured side by side in one run.

Paths, all real OpenSSH (`scp` to a throw-away local sshd, tests/support/sshd.py):

1. direct: `scp` to the sshd (the baseline);
2. OpenSSM: the operator's ProxyCommand with `openssm start-session … AWS-StartSSHSession`
   (client → gateway → OpenSSM agent → sshd);
3. AWS CLI: the same ProxyCommand with `aws ssm start-session`, which execs OpenSSM's
   session-manager-plugin.

Each copies SIZE bytes up and back down, checks both copies byte for byte, and counts the whole
`scp` command (the proxied paths include starting the session). Ratios are against direct.

Run: `.venv/bin/python bench/bench_scp_throughput.py [--size-mib 256] [--repeat 2]`
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.e2e.harness import running_system
from tests.e2e.test_ssh_proxycommand import AWS_PROXY_COMMAND, OPENSSM_PROXY_COMMAND, ssh_config
from tests.support.sshd import run_sshd, sshd_available

MIB = 1024 * 1024


def timed_scp(argv: list[str], env: dict[str, str], source: pathlib.Path, copy: pathlib.Path) -> float:
    copy.unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True)
    seconds = time.perf_counter() - started
    if copy.read_bytes() != source.read_bytes():
        raise AssertionError(f"{copy} differs from {source}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2, help="runs per case; the best one counts")
    args = parser.parse_args()
    if not sshd_available():
        sys.exit("OpenSSH server and client are needed (openssh-server, openssh-client)")
    size = args.size_mib * MIB
    results: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = pathlib.Path(tmp_name)
        source = tmp / "source.bin"
        source.write_bytes(os.urandom(size))
        with run_sshd(tmp / "sshd") as sshd, running_system(tmp / "system") as (server, agent):
            env = {**server.aws_env(), "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}"}
            remote = f"{sshd.user}@127.0.0.1"
            paths = {"direct": (sshd.client_options("-P"), remote)}
            for name, proxy in (("OpenSSM", OPENSSM_PROXY_COMMAND), ("AWS CLI", AWS_PROXY_COMMAND)):
                config = ssh_config(tmp / f"config-{name.replace(' ', '')}", proxy, server, sshd)
                paths[name] = (["-F", str(config)], str(agent.instance_id))
            for name, (options, host) in paths.items():
                up, down = tmp / f"up-{name}", tmp / f"down-{name}"
                results[(name, "upload")] = min(
                    timed_scp(["scp", *options, str(source), f"{host}:{up}"], env, source, up)
                    for _ in range(args.repeat)
                )
                results[(name, "download")] = min(
                    timed_scp(["scp", *options, f"{host}:{source}", str(down)], env, source, down)
                    for _ in range(args.repeat)
                )
    print(f"\nscp throughput, {args.size_mib} MiB per copy, best of {args.repeat}, whole command timed\n")
    print(f"{'path':<10} {'direction':<10} {'MiB/s':>8} {'vs direct':>10}")
    for (name, direction), seconds in results.items():
        rate = size / MIB / seconds
        ratio = results[("direct", direction)] / seconds
        print(f"{name:<10} {direction:<10} {rate:>8.1f} {ratio:>9.1%}")


if __name__ == "__main__":
    main()
