"""DescribeInstanceInformation over a fleet written straight to the store: keyset pages (one page read
per call) list exactly the nodes, in the order, that filtering the whole fleet in Python gives, for
every filter; NextTokens are opaque and refused when altered or reused with other filters.

Runs on PostgreSQL too (``OPENSSM_TEST_DATABASE=postgresql``)."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest
import sqlalchemy as sa
from tests.integration.api_harness import ApiServer

from openssm.store import gateway_nodes, instances
from openssm.store.instances import InstanceRow
from openssm.store.tables import instances as instances_table

FLEET = 2_100
DEAD_NODE = "node-gone"


def _node(index: int, live_node: str) -> dict[str, Any]:
    managed = index % 4 != 3
    tags = {"env": "prod" if index % 2 else "dev"}
    if index % 5 == 0:
        tags["team"] = f"t{index % 3}"
    return {
        "instance_id": f"mi-{index:017x}" if managed else f"i-{index:017x}",
        "activation_id": f"00000000-0000-0000-0000-{index % 3:012d}" if managed else None,
        "iam_role": "SSMRole" if managed else f"Ec2Role{index % 2}",
        "name": f"node{index}",
        "public_key": "",
        "public_key_type": "Rsa",
        "fingerprint": "",
        "registration_date": dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        "platform_type": "Linux" if index % 7 else "Windows",
        "agent_version": f"3.3.{index % 4}",
        "last_ping_at": dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        "tags": tags,
        "deregistered": index % 50 == 0,
        "control_node_id": (live_node, DEAD_NODE, None)[index % 3],
    }


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = ApiServer(tmp_path_factory.mktemp("fleet") / "data").start()
    live_node = server.config.node_id

    async def populate(engine: Any) -> None:
        rows = [_node(index, live_node) for index in range(FLEET)]
        async with engine.begin() as conn:  # one insert: the listing, not the writes, is under test
            await conn.execute(sa.insert(instances_table), rows)
        an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        await gateway_nodes.announce(engine, DEAD_NODE, "http://127.0.0.1:1", now=an_hour_ago)

    server.db(populate)
    try:
        yield server
    finally:
        server.stop()


def _expected(server: ApiServer, filters: list[tuple[str, set[str]]]) -> list[tuple[str, str]]:
    """The whole fleet filtered in Python: what the listing did before it read one page."""

    async def everything(engine: Any) -> tuple[list[InstanceRow], dict[str, str]]:
        return await instances.list_all(engine), await gateway_nodes.alive(
            engine, now=dt.datetime.now(dt.UTC), own_node=server.config.node_id
        )

    rows, alive = server.db(everything)

    def field(row: InstanceRow, key: str) -> str | None:
        if key == "PingStatus":
            return row.ping_status(alive)
        if key == "ResourceType":
            return "ManagedInstance" if row.instance_id.startswith("mi-") else "EC2Instance"
        return {
            "InstanceIds": row.instance_id,
            "AgentVersion": row.agent_version,
            "PlatformTypes": row.platform_type,
            "ActivationIds": row.activation_id,
            "IamRole": row.iam_role,
        }.get(key)

    def matches(row: InstanceRow, key: str, values: set[str]) -> bool:
        if key.startswith("tag:"):
            return key[4:] in row.tags and row.tags[key[4:]] in values
        if key == "tag-key":
            return bool(values & set(row.tags))
        return field(row, key) in values

    return [
        (row.instance_id, row.ping_status(alive))
        for row in rows
        if all(matches(row, key, values) for key, values in filters)
    ]


def _listed(server: ApiServer, **arguments: Any) -> list[tuple[str, str]]:
    pages = server.client().get_paginator("describe_instance_information").paginate(**arguments)
    return [
        (node["InstanceId"], node["PingStatus"]) for page in pages for node in page["InstanceInformationList"]
    ]


def test_unfiltered_pages_list_the_whole_fleet_in_order(fleet: ApiServer) -> None:
    listed = _listed(fleet, PaginationConfig={"PageSize": 50})
    assert len(listed) == FLEET
    assert listed == _expected(fleet, [])
    assert {status for _, status in listed} == {"Online", "ConnectionLost", "Inactive"}


@pytest.mark.parametrize(
    "filters",
    [
        [("PingStatus", {"Online"})],
        [("PingStatus", {"ConnectionLost", "Inactive"})],
        [("tag:env", {"prod"})],
        [("tag-key", {"team"}), ("PingStatus", {"Online"})],
        [("tag:team", {"t1", "t2"}), ("ResourceType", {"ManagedInstance"})],
        [("InstanceIds", {f"mi-{index:017x}" for index in range(0, 300, 7)})],
        [("AgentVersion", {"3.3.1"}), ("PlatformTypes", {"Windows"})],
        [("IamRole", {"Ec2Role1"}), ("ResourceType", {"EC2Instance"})],
        [("ActivationIds", {"00000000-0000-0000-0000-000000000002"})],
        [("tag:no-such-key", {"x"})],
        [("tag:bad\"key'", {"x"})],
        [("AssociationStatus", {"Success"})],
    ],
)
def test_filters_match_the_whole_fleet_filter(fleet: ApiServer, filters: list[tuple[str, set[str]]]) -> None:
    request = [{"Key": key, "Values": sorted(values)} for key, values in filters]
    listed = _listed(fleet, Filters=request, PaginationConfig={"PageSize": 37})
    assert listed == _expected(fleet, filters)


def test_legacy_filter_list_pages_too(fleet: ApiServer) -> None:
    request = [{"key": "PingStatus", "valueSet": ["Online"]}]
    listed = _listed(fleet, InstanceInformationFilterList=request, PaginationConfig={"PageSize": 50})
    assert listed == _expected(fleet, [("PingStatus", {"Online"})])
    assert len(listed) > 50


def test_next_token_is_opaque_and_bound_to_its_listing(fleet: ApiServer) -> None:
    client = fleet.client()
    first = client.describe_instance_information(MaxResults=5)
    token = first["NextToken"]
    assert "mi-" not in base64.urlsafe_b64decode(token).decode("latin-1")
    second = client.describe_instance_information(MaxResults=5, NextToken=token)
    assert (
        second["InstanceInformationList"][0]["InstanceId"]
        > first["InstanceInformationList"][-1]["InstanceId"]
    )
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[-1] ^= 1
    altered = base64.urlsafe_b64encode(bytes(raw)).decode()
    other_filters = {"Filters": [{"Key": "PingStatus", "Values": ["Online"]}]}
    for arguments in (
        {"NextToken": altered},
        {"NextToken": token, **other_filters},
        {"NextToken": "garbage"},
    ):
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            client.describe_instance_information(MaxResults=5, **arguments)
        assert excinfo.value.response["Error"]["Code"] == "InvalidNextToken"
