"""Failing over between the server nodes of a scale-out OpenSSM."""

from __future__ import annotations

import json
import pathlib

import pytest

from openssm.agent.config import Registration, StateError, load_registration, save_registration
from openssm.agent.endpoints import Endpoints

A, B, C = "http://a:1", "http://b:1", "http://c:1"


def test_fails_over_in_order_and_wraps_around() -> None:
    endpoints = Endpoints((A, B, C))
    assert endpoints.current == A
    assert endpoints.fail_over(A) == B
    assert endpoints.fail_over(B) == C
    assert endpoints.fail_over(C) == A


def test_only_the_first_report_of_an_outage_moves_on() -> None:
    endpoints = Endpoints((A, B, C))
    endpoints.fail_over(A)  # the control channel noticed first ...
    assert endpoints.fail_over(A) == B  # ... the health ping's late report of A must not skip B


def test_a_single_endpoint_stays_put() -> None:
    endpoints = Endpoints((A,))
    assert endpoints.fail_over(A) == A
    with pytest.raises(ValueError):
        Endpoints(())


def test_registration_keeps_failover_endpoints(tmp_path: pathlib.Path) -> None:
    registration = Registration("mi-0123456789abcdef0", "us-east-1", A, "fp", failover_endpoints=(B, C))
    save_registration(tmp_path, registration, b"pem")
    assert load_registration(tmp_path)[0] == registration
    # Registrations written before scale-out have no such member.
    raw = json.loads((tmp_path / "registration.json").read_text())
    del raw["failover_endpoints"]
    (tmp_path / "registration.json").write_text(json.dumps(raw))
    assert load_registration(tmp_path)[0].failover_endpoints == ()
    raw["failover_endpoints"] = [B, 7]
    (tmp_path / "registration.json").write_text(json.dumps(raw))
    with pytest.raises(StateError, match="failover_endpoints"):
        load_registration(tmp_path)
