"""Nodes that join with IAM credentials, as EC2 instances do: UpdateInstanceInformation signed by an IAM
user allowed ``ssm:UpdateInstanceInformation`` on the instance's ARN makes the node appear; anything
else is refused with AccessDeniedException naming the action and the resource, and logged.

The calls are the agent's own (signed by our signer, as AWS's agent signs them); the operator's side
is the real AWS CLI.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.api_harness import ACCOUNT, REGION, ApiServer, node_credentials, register_node
from tests.support.node_policy import iam_node_policy

NODE = "i-0aaaaaaaaaaaaaaa1"
OTHER = "i-0bbbbbbbbbbbbbbb2"
UPDATE = "AmazonSSM.UpdateInstanceInformation"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    running = ApiServer(tmp_path_factory.mktemp("iam-nodes") / "data").start()
    try:
        yield running
    finally:
        running.stop()


def iam_user(server: ApiServer, name: str, policy: dict[str, Any]) -> tuple[str, str]:
    server.aws("iam", "create-user", "--user-name", name)
    server.aws(
        "iam",
        "put-user-policy",
        "--user-name",
        name,
        "--policy-name",
        "node",
        "--policy-document",
        json.dumps(policy),
    )
    key = server.aws("iam", "create-access-key", "--user-name", name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def report(server: ApiServer, instance_id: str, credentials: tuple[str, ...]) -> tuple[int, dict[str, Any]]:
    result = server.call_json(
        UPDATE,
        {
            "InstanceId": instance_id,
            "AgentName": "amazon-ssm-agent",
            "AgentVersion": "3.3.0.0",
            "PlatformType": "Linux",
        },
        credentials=credentials,
    )
    return result.status, result.json() if result.body else {}


def listed(server: ApiServer) -> dict[str, dict[str, Any]]:
    nodes = server.aws("ssm", "describe-instance-information")["InstanceInformationList"]
    return {node["InstanceId"]: node for node in nodes}


def test_a_node_allowed_on_its_instance_arn_appears_as_the_id_it_reports(server: ApiServer) -> None:
    credentials = iam_user(server, "node-a", iam_node_policy(REGION, ACCOUNT, NODE))
    assert report(server, NODE, credentials) == (200, {})
    node = listed(server)[NODE]
    assert node["ResourceType"] == "EC2Instance"
    assert node["AgentVersion"] == "3.3.0.0" and node["PlatformType"] == "Linux"
    assert "ActivationId" not in node or node["ActivationId"] is None
    # Reporting again is a ping, not a second registration.
    assert report(server, NODE, credentials) == (200, {})
    # Tags for Run Command's tag targets, the way AWS tags managed nodes.
    server.aws(
        "ssm",
        "add-tags-to-resource",
        "--resource-type",
        "ManagedInstance",
        "--resource-id",
        NODE,
        "--tags",
        "Key=Role,Value=web",
    )
    tags = server.aws(
        "ssm", "list-tags-for-resource", "--resource-type", "ManagedInstance", "--resource-id", NODE
    )
    assert tags["TagList"] == [{"Key": "Role", "Value": "web"}]


def test_a_node_not_allowed_is_refused_in_aws_words_and_logged(
    server: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = iam_user(server, "node-b", iam_node_policy(REGION, ACCOUNT, NODE))
    with caplog.at_level(logging.INFO, logger="openssm.refused"):
        status, body = report(server, OTHER, credentials)
    assert status == 400 and body["__type"] == "AccessDeniedException"
    resource = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{OTHER}"
    assert "ssm:UpdateInstanceInformation" in body["message"] and resource in body["message"]
    assert OTHER not in listed(server)
    [line] = [r.getMessage() for r in caplog.records if OTHER in r.getMessage()]
    assert (
        line.startswith(f"refused ssm:UpdateInstanceInformation on {resource} by ") and "user/node-b" in line
    )


def test_only_ec2_style_ids_can_be_joined(server: ApiServer) -> None:
    everything = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}],
    }
    credentials = iam_user(server, "node-c", everything)
    for instance_id in ("i-0123abcd", "mi-0ccccccccccccccc3"):  # short EC2 ids; ids only activations issue
        status, body = report(server, instance_id, credentials)
        assert (status, body["__type"]) == (400, "InvalidInstanceId"), instance_id
        assert instance_id not in listed(server)


def test_an_activation_nodes_id_is_refused_unless_the_caller_is_allowed_for_it(server: ApiServer) -> None:
    activation = server.client().create_activation(IamRole="OpenSSMNodeRole", RegistrationLimit=1)
    registered = register_node(server, activation["ActivationCode"], activation["ActivationId"])
    taker = iam_user(
        server, "node-d", iam_node_policy(REGION, ACCOUNT, NODE)
    )  # allowed for its own i- id only
    status, body = report(server, registered.instance_id, taker)
    assert (status, body["__type"]) == (400, "AccessDeniedException")
    assert f"managed-instance/{registered.instance_id}" in body["message"]
    operator = iam_user(
        server,
        "node-e",
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ssm:UpdateInstanceInformation", "Resource": "*"}],
        },
    )
    assert report(server, registered.instance_id, operator) == (200, {})
    # The activation node's own role credentials cannot report as another instance, even a new one.
    own = node_credentials(server, registered)
    assert report(server, registered.instance_id, own) == (200, {})
    status, body = report(server, "i-0ddddddddddddddd4", own)
    assert (status, body["__type"]) == (400, "AccessDeniedException")
    assert "i-0ddddddddddddddd4" not in listed(server)
