"""API operations are registered by static imports (``openssm.api.handlers``): every module that
defines operations is reached from there, and an operation cannot be registered twice."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest

from openssm.api import registry

# In a fresh interpreter, so that no other test has imported an operation module already.
_SCRIPT = """
import importlib, json, pkgutil
import openssm.api.app
from openssm.api import registry
import openssm.api
seen = registry.registered()
mounted = sorted(seen)
unlisted = {}
for info in pkgutil.walk_packages(openssm.api.__path__, "openssm.api."):
    importlib.import_module(info.name)
    added = registry.registered() - seen
    if added:
        unlisted[info.name] = sorted(added)
        seen = registry.registered()
print(json.dumps({"mounted": mounted, "unlisted": unlisted}))
"""


def test_every_operation_module_is_imported_by_the_api() -> None:
    result = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True)
    found: dict[str, Any] = json.loads(result.stdout)
    assert found["unlisted"] == {}, "operation modules missing from openssm.api.handlers"
    # One operation of each module: what the server mounts once openssm.api.app is imported.
    assert {
        "AmazonSSM.StartSession",  # ssm_sessions
        "AmazonSSM.DescribeInstanceInformation",  # ssm
        "AmazonSSM.RegisterManagedInstance",  # ssm_node_admin
        "AmazonSSM.UpdateInstanceInformation",  # ssm_agent
        "AmazonSSM.SendCommand",  # commands
        "AmazonSSM.CreateDocument",  # documents
        "iam:CreateUser",  # iam
        "iam:CreateLoginProfile",  # iam.login_profiles
        "sts:GetCallerIdentity",  # sts
        "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents",  # audit
    } <= set(found["mounted"])


def test_an_operation_registered_twice_is_refused() -> None:
    async def handler(request: Any, body: dict[str, Any]) -> dict[str, Any]:
        return {}

    registry.json_action("OpenSSMTestTwice", "Once")(handler)
    with pytest.raises(registry.DuplicateOperation, match=r"OpenSSMTestTwice\.Once"):
        registry.json_action("OpenSSMTestTwice", "Once")(handler)

    async def query_handler(request: Any, params: Mapping[str, str]) -> dict[str, Any]:
        return {}

    registry.query_action("openssm-test", "OnceOnly", xmlns="urn:test")(query_handler)
    with pytest.raises(registry.DuplicateOperation):
        registry.query_action("openssm-test", "OnceOnly", xmlns="urn:test")(query_handler)
