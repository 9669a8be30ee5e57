"""Activations and registration against a real server: boto3, the real AWS CLI, and agent-shaped calls."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator

import botocore.exceptions
import pytest
from tests.conftest import require
from tests.integration.api_harness import (
    ApiServer,
    connect_instance,
    node_credentials,
    register_node,
    request_role_token,
    rsa_signed_call,
)


@pytest.fixture
def server(tmp_path: pathlib.Path) -> Iterator[ApiServer]:
    running = ApiServer(tmp_path / "data").start()
    try:
        yield running
    finally:
        running.stop()


def _error(exc: botocore.exceptions.ClientError) -> tuple[str, str]:
    return exc.response["Error"]["Code"], exc.response["Error"]["Message"]


def test_create_describe_delete_activation_with_boto3(server: ApiServer) -> None:
    ssm = server.client()
    created = ssm.create_activation(
        IamRole="OpenSSMNodeRole",
        DefaultInstanceName="web",
        RegistrationLimit=3,
        Description="d",
        Tags=[{"Key": "team", "Value": "ops"}],
    )
    assert len(created["ActivationCode"]) >= 20
    other = ssm.create_activation(IamRole="OpenSSMNodeRole", DefaultInstanceName="db")
    listed = ssm.describe_activations()["ActivationList"]
    assert {item["ActivationId"] for item in listed} == {created["ActivationId"], other["ActivationId"]}
    found = ssm.describe_activations(Filters=[{"FilterKey": "DefaultInstanceName", "FilterValues": ["web"]}])
    (only,) = found["ActivationList"]
    assert only["ActivationId"] == created["ActivationId"]
    assert only["RegistrationLimit"] == 3 and only["RegistrationsCount"] == 0 and only["Expired"] is False
    assert only["Tags"] == [{"Key": "team", "Value": "ops"}]
    assert "ActivationCode" not in only  # the code is shown once, at creation
    first = ssm.describe_activations(MaxResults=1)
    second = ssm.describe_activations(MaxResults=1, NextToken=first["NextToken"])
    assert "NextToken" not in second
    assert first["ActivationList"][0]["ActivationId"] != second["ActivationList"][0]["ActivationId"]
    ssm.delete_activation(ActivationId=created["ActivationId"])
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.delete_activation(ActivationId=created["ActivationId"])
    assert _error(excinfo.value)[0] == "InvalidActivationId"


def test_activation_needs_an_existing_role(server: ApiServer) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        server.client().create_activation(IamRole="NoSuchRole")
    code, message = _error(excinfo.value)
    assert code == "InvalidParameters" and "NoSuchRole" in message


def test_aws_cli_activation_round_trip(server: ApiServer) -> None:
    aws = pathlib.Path(sys.executable).with_name("aws")
    require(aws.exists(), "AWS CLI not installed in the venv (make install puts it there)")
    data = server.config.data_dir
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(data / "credentials"), AWS_CONFIG_FILE=str(data / "config"))

    def cli(*args: str) -> dict[str, object]:
        out = subprocess.run(
            [str(aws), "--profile", "openssm", "--endpoint-url", server.endpoint, "ssm", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    created = cli("create-activation", "--iam-role", "OpenSSMNodeRole", "--registration-limit", "2")
    listed = cli(
        "describe-activations", "--filters", f"FilterKey=ActivationIds,FilterValues={created['ActivationId']}"
    )
    assert [a["ActivationId"] for a in listed["ActivationList"]] == [created["ActivationId"]]  # type: ignore[attr-defined]
    cli("delete-activation", "--activation-id", str(created["ActivationId"]))
    assert cli("describe-activations")["ActivationList"] == []
    # A node registered through an activation shows up in the CLI's inventory.
    created = cli("create-activation", "--iam-role", "OpenSSMNodeRole", "--default-instance-name", "cli-node")
    node = register_node(server, str(created["ActivationCode"]), str(created["ActivationId"]))
    inventory = cli("describe-instance-information")["InstanceInformationList"]
    assert [(i["InstanceId"], i["Name"]) for i in inventory] == [(node.instance_id, "cli-node")]  # type: ignore[attr-defined]
    # Our error shape reaches the user as the CLI prints AWS's own errors.
    failed = subprocess.run(
        [str(aws), "--profile", "openssm", "ssm", "describe-sessions", "--state", "Sideways"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert failed.returncode != 0  # 254 or 255 by CLI version
    assert (
        "An error occurred (ValidationException) when calling the DescribeSessions operation" in failed.stderr
    )
    assert "State" in failed.stderr
    cli("delete-activation", "--activation-id", str(created["ActivationId"]))
    # The profile alone (endpoint_url in the config file) also reaches the server.
    out = subprocess.run(
        [str(aws), "--profile", "openssm", "ssm", "describe-activations"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0 and json.loads(out.stdout) == {"ActivationList": []}, out.stderr


def test_register_token_and_inventory(server: ApiServer) -> None:
    ssm = server.client()
    activation = ssm.create_activation(IamRole="OpenSSMNodeRole", DefaultInstanceName="node-a")
    node = register_node(server, activation["ActivationCode"], activation["ActivationId"])
    assert node.instance_id.startswith("mi-") and len(node.instance_id) == 20
    key, secret, token = node_credentials(server, node)
    assert key.startswith("ASIA")
    short = {
        "AgentName": "amazon-ssm-agent",
        "AgentVersion": "3.3.0.0",
        "InstanceId": node.instance_id,
        "PlatformType": "Linux",
    }
    assert (
        server.call_json(
            "AmazonSSM.UpdateInstanceInformation", short, credentials=(key, secret, token)
        ).json()
        == {}
    )
    full = dict(
        short,
        AgentStatus="Active",
        AvailabilityZone="",
        AvailabilityZoneId="",
        ComputerName="host-a",
        IPAddress="10.0.0.5",
        PlatformName="Debian",
        PlatformVersion="12",
        SSMConnectionChannel="",
    )
    assert (
        server.call_json("AmazonSSM.UpdateInstanceInformation", full, credentials=(key, secret, token)).status
        == 200
    )
    listed = ssm.describe_instance_information()["InstanceInformationList"]
    (info,) = listed
    assert info["InstanceId"] == node.instance_id
    assert info["PingStatus"] == "ConnectionLost"
    assert info["ResourceType"] == "ManagedInstance" and info["IamRole"] == "OpenSSMNodeRole"
    assert info["ActivationId"] == activation["ActivationId"] and info["Name"] == "node-a"
    assert (
        info["ComputerName"] == "host-a"
        and info["IPAddress"] == "10.0.0.5"
        and info["PlatformType"] == "Linux"
    )
    assert ssm.get_connection_status(Target=node.instance_id)["Status"] == "notconnected"
    connect_instance(server, node.instance_id)
    assert ssm.get_connection_status(Target=node.instance_id)["Status"] == "connected"
    online = ssm.describe_instance_information(
        InstanceInformationFilterList=[{"key": "PingStatus", "valueSet": ["Online"]}]
    )["InstanceInformationList"]
    assert [i["InstanceId"] for i in online] == [node.instance_id]
    none = ssm.describe_instance_information(Filters=[{"Key": "PlatformTypes", "Values": ["Windows"]}])
    assert none["InstanceInformationList"] == []
    associations = server.call_json(
        "AmazonSSM.ListInstanceAssociations",
        {"InstanceId": node.instance_id, "MaxResults": 20},
        credentials=(key, secret, token),
    )
    assert associations.status == 200 and associations.json() == {}


def test_registration_refusals(server: ApiServer) -> None:
    ssm = server.client()
    activation = ssm.create_activation(IamRole="OpenSSMNodeRole", RegistrationLimit=1)
    bad = server.call_json(
        "AmazonSSM.RegisterManagedInstance",
        {
            "ActivationCode": "wrong-code-wrong-code",
            "ActivationId": activation["ActivationId"],
            "Fingerprint": "f",
            "PublicKey": "AAAA",
            "PublicKeyType": "Rsa",
        },
        signed=False,
    )
    assert bad.status == 400
    node = register_node(server, activation["ActivationCode"], activation["ActivationId"])
    import base64

    from openssm.auth.rsa_identity import generate_key_pair

    _, public_der = generate_key_pair()
    body = {
        "ActivationCode": activation["ActivationCode"],
        "ActivationId": activation["ActivationId"],
        "Fingerprint": "f2",
        "PublicKey": base64.b64encode(public_der).decode(),
        "PublicKeyType": "Rsa",
    }
    wrong_code = server.call_json(
        "AmazonSSM.RegisterManagedInstance", dict(body, ActivationCode="x" * 20), signed=False
    )
    assert wrong_code.json()["__type"] == "InvalidActivation"
    over_limit = server.call_json("AmazonSSM.RegisterManagedInstance", body, signed=False)
    assert over_limit.json()["__type"] == "InvalidActivation" and "limit" in over_limit.json()["message"]
    unknown = server.call_json(
        "AmazonSSM.RegisterManagedInstance",
        dict(body, ActivationId="00000000-0000-4000-8000-000000000000"),
        signed=False,
    )
    assert unknown.json()["__type"] == "InvalidActivationId"
    # A token request signed with another key, or naming another fingerprint, gets nothing.
    other_private, _ = generate_key_pair()
    forged = request_role_token(server, node, private_key_der=other_private)
    assert forged.status in (400, 403) and "AccessKeyId" not in forged.json()
    assert request_role_token(server, node, fingerprint="other").status == 400


def test_agent_credentials_are_scoped(server: ApiServer) -> None:
    ssm = server.client()
    activation = ssm.create_activation(IamRole="OpenSSMNodeRole", RegistrationLimit=2)
    node_a = register_node(server, activation["ActivationCode"], activation["ActivationId"], "fa")
    node_b = register_node(server, activation["ActivationCode"], activation["ActivationId"], "fb")
    creds = node_credentials(server, node_a)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        server.client("ssm", creds).create_activation(IamRole="OpenSSMNodeRole")
    code, message = _error(excinfo.value)
    assert code == "AccessDeniedException"
    assert message == (
        f"User: arn:aws:sts::123456789012:assumed-role/OpenSSMNodeRole/{node_a.instance_id} is not authorized to "
        "perform: ssm:CreateActivation on resource: arn:aws:ssm:us-east-1:123456789012:activation/* "
        "because no identity-based policy allows the ssm:CreateActivation action"
    )
    other = server.call_json(
        "AmazonSSM.UpdateInstanceInformation", {"InstanceId": node_b.instance_id}, credentials=creds
    )
    assert other.json()["__type"] == "AccessDeniedException"
    wrong_token = server.call_json(
        "AmazonSSM.UpdateInstanceInformation",
        {"InstanceId": node_a.instance_id},
        credentials=(creds[0], creds[1], "x" * 40),
    )
    assert wrong_token.status == 400 and wrong_token.json()["__type"] == "UnrecognizedClientException"
    no_token = server.call_json(
        "AmazonSSM.UpdateInstanceInformation", {"InstanceId": node_a.instance_id}, credentials=creds[:2]
    )
    assert no_token.json()["__type"] == "UnrecognizedClientException"


@pytest.mark.slow
def test_get_messages_long_poll_ends_at_shutdown(tmp_path: pathlib.Path) -> None:
    import threading

    server = ApiServer(tmp_path / "data").start()
    activation = server.client().create_activation(IamRole="OpenSSMNodeRole")
    node = register_node(server, activation["ActivationCode"], activation["ActivationId"])
    creds = node_credentials(server, node)
    results = []

    def poll() -> None:
        started = time.monotonic()
        answer = server.call_json(
            "EC2WindowsMessageDeliveryService.GetMessages",
            {"Destination": node.instance_id, "MessagesRequestId": "r-1", "VisibilityTimeoutInSeconds": 10},
            credentials=creds,
            service="ec2messages",
        )
        results.append((time.monotonic() - started, answer))

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(1.5)  # deliberate: the long poll's hold under test (nothing to wait for)
    assert not results  # still held
    server.stop()
    poller.join(timeout=15)
    elapsed, answer = results[0]
    assert elapsed < 10
    assert answer.status == 200
    assert answer.json() == {"Destination": node.instance_id, "Messages": [], "MessagesRequestId": "r-1"}


def test_key_rotation_with_update_managed_instance_public_key(server: ApiServer) -> None:
    import base64
    import dataclasses

    from openssm.auth.rsa_identity import generate_key_pair

    activation = server.client().create_activation(IamRole="OpenSSMNodeRole")
    node = register_node(server, activation["ActivationCode"], activation["ActivationId"])
    new_private, new_public = generate_key_pair()
    answer = rsa_signed_call(
        server,
        node,
        "UpdateManagedInstancePublicKey",
        {"NewPublicKey": base64.b64encode(new_public).decode(), "NewPublicKeyType": "Rsa"},
    )
    assert answer.status == 200 and answer.json() == {}
    assert request_role_token(server, node).status != 200  # the old key is retired
    rotated = dataclasses.replace(node, private_key_der=new_private)
    assert request_role_token(server, rotated).status == 200


def test_deregistration_revokes_the_node(server: ApiServer) -> None:
    ssm = server.client()
    activation = ssm.create_activation(IamRole="OpenSSMNodeRole")
    node = register_node(server, activation["ActivationCode"], activation["ActivationId"])
    creds = node_credentials(server, node)
    ssm.deregister_managed_instance(InstanceId=node.instance_id)
    (info,) = ssm.describe_instance_information()["InstanceInformationList"]
    assert info["PingStatus"] == "Inactive"
    ping = server.call_json(
        "AmazonSSM.UpdateInstanceInformation", {"InstanceId": node.instance_id}, credentials=creds
    )
    assert ping.json()["__type"] == "UnrecognizedClientException"
    assert request_role_token(server, node).status != 200
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.deregister_managed_instance(InstanceId=node.instance_id)
    assert _error(excinfo.value)[0] == "InvalidInstanceId"


def test_describe_instance_information_pages_and_filters_in_the_database(server: ApiServer) -> None:
    """Pages of 5 over 12 nodes (keyset tokens), filters on columns (InstanceIds, PingStatus) and
    tags together, each page exactly as the unpaged listing has it."""
    ssm = server.client()
    tagged = ssm.create_activation(
        IamRole="OpenSSMNodeRole", RegistrationLimit=5, Tags=[{"Key": "team", "Value": "blue"}]
    )
    plain = ssm.create_activation(IamRole="OpenSSMNodeRole", RegistrationLimit=7)
    blue = [
        register_node(server, tagged["ActivationCode"], tagged["ActivationId"]).instance_id for _ in range(5)
    ]
    others = [
        register_node(server, plain["ActivationCode"], plain["ActivationId"]).instance_id for _ in range(7)
    ]
    for instance_id in blue[:2] + others[:1]:
        connect_instance(server, instance_id)

    def listing(**kwargs: object) -> tuple[list[str], int]:
        ids: list[str] = []
        pages = 0
        token = None
        while True:
            page = ssm.describe_instance_information(
                MaxResults=5, **kwargs, **({"NextToken": token} if token else {})
            )
            assert len(page["InstanceInformationList"]) <= 5
            ids += [item["InstanceId"] for item in page["InstanceInformationList"]]
            pages += 1
            token = page.get("NextToken")
            if not token:
                return ids, pages

    everything, pages = listing()
    assert everything == sorted(blue + others) and pages == 3
    online, _ = listing(Filters=[{"Key": "PingStatus", "Values": ["Online"]}])
    assert online == sorted(blue[:2] + others[:1])
    lost_blue, _ = listing(
        Filters=[{"Key": "PingStatus", "Values": ["ConnectionLost"]}, {"Key": "tag:team", "Values": ["blue"]}]
    )
    assert lost_blue == sorted(blue[2:])
    chosen, _ = listing(
        Filters=[{"Key": "InstanceIds", "Values": [others[3], blue[4], "mi-00000000000000000"]}]
    )
    assert chosen == sorted([others[3], blue[4]])
    assert listing(Filters=[{"Key": "tag-key", "Values": ["team"]}])[0] == sorted(blue)
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        ssm.describe_instance_information(
            NextToken=ssm.describe_activations(MaxResults=1).get("NextToken") or "x"
        )
    assert _error(refused.value)[0] == "InvalidNextToken"
