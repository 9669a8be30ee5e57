"""The API's cost of a big fleet: DescribeInstanceInformation pages and UpdateInstanceInformation calls.

N nodes (10,000 by default) are written straight to a fresh store (SQLite), a third of them Online
on the live gateway node; then, through the real aiohttp application with SigV4-signed requests
(``tests/support/inprocess_api.py``, client and server in one process):

- ``describe-instance-information`` at 50 a page: p50/p99 per page over a full listing, the full
  listing's time, and a filtered listing (``PingStatus=Online`` + a tag);
- ``UpdateInstanceInformation`` signed with each node's own role credentials (as agents sign it):
  process CPU per call, client included, on each node's first report (what follows a change to
  IAM, which empties every cache), then in the steady state (each node again, reporting what it
  reported before); beside the client's own share (signing the request). The server's is the
  difference.

``--before REV`` runs the same measurement first on the code of git revision REV (extracted with
``git archive`` into a temporary directory, imported instead of this checkout), then on this one,
and prints both side by side.

Run: ``.venv/bin/python bench/bench_fleet_api.py [--nodes 10000] [--calls 2000] [--before main]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support

PAGE = 50
TRUST_SSM = json.dumps(
    {
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
    }
)
AGENT_REPORT = {
    "AgentName": "amazon-ssm-agent",
    "AgentVersion": "3.3.1",
    "ComputerName": "node",
    "IPAddress": "10.0.0.1",
    "PlatformName": "Ubuntu",
    "PlatformType": "Linux",
    "PlatformVersion": "24.04",
    "AgentStatus": "Active",
}


def _node(index: int, live_node: str, now: dt.datetime) -> dict[str, Any]:
    return {
        "instance_id": f"i-{index:017x}",
        "activation_id": None,
        "iam_role": None,
        "name": f"node{index}",
        "public_key": "",
        "public_key_type": "",
        "fingerprint": "",
        "registration_date": now,
        "agent_name": "amazon-ssm-agent",
        "agent_version": "3.3.1",
        "computer_name": "node",
        "ip_address": "10.0.0.1",
        "platform_name": "Ubuntu",
        "platform_type": "Linux",
        "platform_version": "24.04",
        "last_ping_at": now,
        "control_node_id": live_node if index % 3 == 0 else None,
        "tags": {"env": "prod" if index % 2 else "dev", "rack": f"r{index % 40}"},
        "deregistered": False,
    }


async def _listing(
    api: Any, credentials: Any, filters: list[dict[str, Any]]
) -> tuple[list[float], float, int]:
    times: list[float] = []
    token: str | None = None
    count = 0
    started = time.perf_counter()
    while True:
        body: dict[str, Any] = {"MaxResults": PAGE, "Filters": filters}
        if token is not None:
            body["NextToken"] = token
        before = time.perf_counter()
        reply = await api.ssm("DescribeInstanceInformation", body, credentials)
        times.append(time.perf_counter() - before)
        assert reply.status == 200, reply.text
        answer = json.loads(reply.text)
        count += len(answer["InstanceInformationList"])
        token = answer.get("NextToken")
        if not token:
            return times, time.perf_counter() - started, count


async def measure(nodes: int, calls: int) -> dict[str, float]:
    import sqlalchemy as sa
    from tests.support.inprocess_api import ACCOUNT, running_api
    from tests.support.stats import percentile

    from openssm.auth.sigv4 import sign_hmac
    from openssm.store import access_keys, gateway_nodes
    from openssm.store.iam import holder_policies, roles
    from openssm.store.tables import instances

    with tempfile.TemporaryDirectory() as tmp:
        async with running_api(pathlib.Path(tmp)) as api:
            services, now = api.services, api.clock.now()
            live = services.config.node_id
            await gateway_nodes.announce(services.engine, live, "http://127.0.0.1:1", now=now)
            rows = [_node(index, live, now) for index in range(nodes)]
            async with services.engine.begin() as conn:
                for start in range(0, nodes, 1000):
                    await conn.execute(sa.insert(instances), rows[start : start + 1000])
            admin = await api.user(
                "admin", {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            )
            figures: dict[str, float] = {}
            await _listing(api, admin, [])  # warm-up: caches, the first connection
            times, total, count = await _listing(api, admin, [])
            assert count == nodes, count
            figures.update(page_p50=percentile(times, 0.5), page_p99=percentile(times, 0.99), listing=total)
            online_prod = [
                {"Key": "PingStatus", "Values": ["Online"]},
                {"Key": "tag:env", "Values": ["prod"]},
            ]
            times, total, count = await _listing(api, admin, online_prod)
            figures.update(filtered_p99=percentile(times, 0.99), filtered_listing=total, filtered_count=count)

            # Every node reports with role credentials of its own, as agents do (RequestManagedInstanceRoleToken).
            policy = {
                "Statement": [{"Effect": "Allow", "Action": "ssm:UpdateInstanceInformation", "Resource": "*"}]
            }
            await roles.create(services.engine, ACCOUNT, "agents", "/", TRUST_SSM, None, {}, now)
            await holder_policies.put_inline(
                services.engine, "role", "agents", "heartbeat", json.dumps(policy)
            )
            reporting = [f"i-{index % nodes:017x}" for index in range(calls)]
            credentials: dict[str, tuple[str, str, str]] = {}
            for instance_id in dict.fromkeys(reporting):
                issued = await access_keys.create_temporary(
                    services.engine, services.cipher, principal_type="managed-instance",
                    principal_name=instance_id, role_name="agents", now=now, lifetime=dt.timedelta(hours=1),
                )  # fmt: skip
                assert issued.session_token is not None
                credentials[instance_id] = (
                    issued.access_key_id,
                    issued.secret_access_key,
                    issued.session_token,
                )
            bodies = [{**AGENT_REPORT, "InstanceId": instance_id} for instance_id in reporting]
            # The first report of each node (what follows a change to IAM: every cache starts over), then
            # the steady state: the same nodes reporting what they reported before, as every 5 minutes.
            for key, _ in (("update_first_cpu_ms", 0), ("update_cpu_ms", 1)):
                cpu = time.process_time()
                for body in bodies:
                    reply = await api.ssm("UpdateInstanceInformation", body, credentials[body["InstanceId"]])
                    assert reply.status == 200, reply.text
                figures[key] = (time.process_time() - cpu) / calls * 1000
            url = str(api.server.make_url("/"))
            cpu = time.process_time()
            for body in bodies:
                encoded = json.dumps(body).encode()
                headers = {
                    "Content-Type": "application/x-amz-json-1.1",
                    "X-Amz-Target": "AmazonSSM.UpdateInstanceInformation",
                }
                key_id, secret, token = credentials[body["InstanceId"]]
                sign_hmac(
                    "POST", url, headers, encoded, access_key_id=key_id, secret_key=secret,
                    session_token=token, region="us-east-1", service="ssm", now=api.clock.now(),
                )  # fmt: skip
            figures["client_sign_ms"] = (time.process_time() - cpu) / calls * 1000
            return figures


def _before(revision: str, nodes: int, calls: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", revision, "src"], check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        env = {**os.environ, "PYTHONPATH": f"{tmp}/src"}
        command = [sys.executable, __file__, "--nodes", str(nodes), "--calls", str(calls), "--json"]
        result = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        return dict(json.loads(result.stdout.strip().splitlines()[-1]))


ROWS = [
    ("page_p50", "describe-instance-information, p50 a page (ms)", 1000),
    ("page_p99", "describe-instance-information, p99 a page (ms)  [≤ 100]", 1000),
    ("listing", "full listing (s)  [≤ 10]", 1),
    ("filtered_p99", "PingStatus=Online + tag:env=prod, p99 a page (ms)", 1000),
    ("filtered_listing", "that filtered listing (s)", 1),
    ("update_first_cpu_ms", "UpdateInstanceInformation, first, CPU incl. client (ms)", 1),
    ("update_cpu_ms", "UpdateInstanceInformation, steady, CPU incl. client (ms)", 1),
    ("client_sign_ms", "  of which the client signing the request (ms)", 1),
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=2_000, help="UpdateInstanceInformation calls measured")
    parser.add_argument("--before", metavar="REV", help="also measure git revision REV, side by side")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    before = _before(args.before, args.nodes, args.calls) if args.before else None
    after = asyncio.run(measure(args.nodes, args.calls))
    if args.json:
        print(json.dumps(after))
        return
    print(
        f"{args.nodes} nodes, {PAGE} a page, {args.calls} UpdateInstanceInformation calls (in-process, SigV4)"
    )
    header = f"{'':58} {'before ' + args.before if before else '':>14} {'this tree':>10}"
    print(header)
    for key, label, scale in ROWS:
        old = f"{before[key] * scale:.1f}" if before and key in before else ""
        print(f"{label:58} {old:>14} {after[key] * scale:10.1f}")
    for name, figures in (("before", before), ("this tree", after)):
        if figures:
            server = figures["update_cpu_ms"] - figures["client_sign_ms"]
            per_core = server * args.nodes / 300 / 1000 * 100
            print(
                f"{name}: server ≈ {server:.1f} ms a call → {args.nodes} agents every 5 min ≈ {per_core:.0f} % of a core"
            )


if __name__ == "__main__":
    main()
