"""Failing over between the server nodes of a scale-out OpenSSM."""

from __future__ import annotations

import collections
import json
import pathlib
import random

import pytest

from openssm.agent.config import Registration, StateError, load_registration, save_registration
from openssm.agent.endpoints import Endpoints

A, B, C = "http://a:1", "http://b:1", "http://c:1"


def test_starts_on_the_first_then_fails_over_through_all_and_wraps_around() -> None:
    endpoints = Endpoints((A, B, C))
    assert endpoints.current == A
    second = endpoints.fail_over(A)
    third = endpoints.fail_over(second)
    assert {second, third} == {B, C}
    assert endpoints.fail_over(third) == A


def test_a_dead_nodes_agents_spread_over_the_others() -> None:
    """Each agent shuffles its failover order: when A dies, its agents do not all go to B."""
    rng = random.Random(16)
    moved = collections.Counter(Endpoints((A, B, C), rng).fail_over(A) for _ in range(1000))
    assert set(moved) == {B, C}
    assert min(moved.values()) > 400


def test_only_the_first_report_of_an_outage_moves_on() -> None:
    endpoints = Endpoints((A, B, C))
    second = endpoints.fail_over(A)  # the control channel noticed first ...
    assert endpoints.fail_over(A) == second  # ... the health ping's late report of A must not skip it


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
