"""JoinSession and SetSessionJoinPolicy through the API of a real server: the mode as the condition key
openssm:JoinMode, the token bound to the joiner and the session, what cannot be joined, the owner's
refusal (only theirs), AWS-shaped errors, and CloudTrail."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.api_harness import ApiServer, connect_instance, make_user, register_node
from tests.integration.test_access_api import Access
from tests.support.join_policies import TYPIST, WATCHER

from openssm.store import channel_tokens


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    server = ApiServer(tmp_path_factory.mktemp("join") / "data").start()
    try:
        ssm = server.client()
        activation = ssm.create_activation(IamRole="OpenSSMNodeRole", RegistrationLimit=1)
        node = register_node(server, activation["ActivationCode"], activation["ActivationId"], "j1")
        connect_instance(server, node.instance_id)
        yield {
            "server": server,
            "node": node.instance_id,
            "watcher": Access(server, make_user(server, "watcher", WATCHER)),
            "typist": Access(server, make_user(server, "typist", TYPIST)),
            "admin": Access(server, server.admin_credentials),
        }
    finally:
        server.stop()


def _shell(system: dict[str, Any], **more: Any) -> str:
    return str(system["server"].client().start_session(Target=system["node"], **more)["SessionId"])


def test_the_mode_is_a_condition_key_and_the_token_is_the_joiners(system: dict[str, Any]) -> None:
    server, watcher, typist = system["server"], system["watcher"], system["typist"]
    session_id = _shell(system)
    joined = watcher.call("JoinSession", {"SessionId": session_id, "ReadOnly": True, "LastScreen": True})
    url = urllib.parse.urlsplit(joined["StreamUrl"])
    assert url.path == f"/v1/data-channel/{session_id}"
    assert urllib.parse.parse_qs(url.query) == {"role": ["publish_subscribe"], "openssmLastScreen": ["1"]}
    message = watcher.refused("JoinSession", {"SessionId": session_id}, "AccessDeniedException")
    assert "openssm:JoinSession" in message
    typed = typist.call("JoinSession", {"SessionId": session_id})
    assert "openssmLastScreen" not in typed["StreamUrl"]

    tokens = server.db(lambda engine: channel_tokens.for_channel(engine, session_id))
    kinds = {token.kind: token.principal_arn for token in tokens}
    assert kinds["join-read"].endswith(":user/watcher") and kinds["join-write"].endswith(":user/typist")


def test_what_cannot_be_joined_and_bad_input(system: dict[str, Any]) -> None:
    admin = system["admin"]
    port = _shell(system, DocumentName="AWS-StartPortForwardingSession", Parameters={"portNumber": ["22"]})
    assert "Only shell sessions" in admin.refused(
        "JoinSession", {"SessionId": port}, "InvalidOperationRequest"
    )
    admin.refused("JoinSession", {"SessionId": "admin-00000000000000000"}, "DoesNotExistException")
    admin.refused("JoinSession", {"SessionId": _shell(system), "ReadOnly": "yes"}, "ValidationException")
    admin.refused("JoinSession", {}, "ValidationException")


def test_only_the_owner_refuses_joins_and_may_allow_them_again(system: dict[str, Any]) -> None:
    admin, typist = system["admin"], system["typist"]
    session_id = _shell(system)
    refuse = {"SessionId": session_id, "AllowJoins": False}
    typist.refused("SetSessionJoinPolicy", refuse, "AccessDeniedException")
    assert admin.call("SetSessionJoinPolicy", refuse) == {"SessionId": session_id, "AllowJoins": False}
    assert "refuses joins" in typist.refused(
        "JoinSession", {"SessionId": session_id}, "AccessDeniedException"
    )
    admin.call("SetSessionJoinPolicy", {"SessionId": session_id, "AllowJoins": True})
    assert typist.call("JoinSession", {"SessionId": session_id})["SessionId"] == session_id


def test_joins_and_join_policies_are_in_cloudtrail(system: dict[str, Any]) -> None:
    server, watcher, admin = system["server"], system["watcher"], system["admin"]
    session_id = _shell(system)
    watcher.call("JoinSession", {"SessionId": session_id, "ReadOnly": True})
    admin.call("SetSessionJoinPolicy", {"SessionId": session_id, "AllowJoins": False})
    events = server.client("cloudtrail").lookup_events(MaxResults=50)["Events"]
    found = {
        event["EventName"]: json.loads(event["CloudTrailEvent"])
        for event in events
        if any(r.get("ResourceName", "").endswith(session_id) for r in event.get("Resources") or [])
    }
    assert found["JoinSession"]["requestParameters"] == {"sessionId": session_id, "joinMode": "ReadOnly"}
    assert found["JoinSession"]["userIdentity"]["userName"] == "watcher"
    assert found["SetSessionJoinPolicy"]["requestParameters"] == {
        "sessionId": session_id,
        "allowJoins": False,
    }
