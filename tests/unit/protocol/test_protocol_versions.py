"""Version comparison as the plugin / agent / CLI do it, and the §3.5 gates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.protocol import versions

parts = st.lists(st.integers(0, 10_000), min_size=1, max_size=5)


def dotted(numbers: list[int]) -> str:
    return ".".join(str(n) for n in numbers)


@given(parts, parts)
def test_plugin_compares_numerically_only_with_equal_part_counts(left: list[int], right: list[int]) -> None:
    greater = versions.plugin_is_greater(dotted(left), dotted(right))
    if len(left) != len(right):
        assert greater is False
    else:
        assert greater == (tuple(left) > tuple(right))


@given(parts, parts)
def test_agent_compare_pads_with_zeros_and_is_antisymmetric(left: list[int], right: list[int]) -> None:
    order = versions.agent_compare(dotted(left), dotted(right))
    assert order == -(versions.agent_compare(dotted(right), dotted(left)) or 0)
    width = max(len(left), len(right))
    padded = (left + [0] * width)[:width], (right + [0] * width)[:width]
    assert order == (padded[0] > padded[1]) - (padded[0] < padded[1])
    assert versions.agent_compare(dotted(left), dotted([*left, 0])) == 0


@pytest.mark.parametrize("bad", ["", "3.x.1.0", "1..2", "v3.3.0.0", "3.3.0.0-beta", "٣.1", "1." * 40])
def test_unparsable_versions_never_pass_a_gate(bad: str) -> None:
    assert versions.plugin_is_greater(bad, "0.0.0.0") is False
    assert versions.agent_compare(bad, "0") is None
    assert versions.uses_mux(bad) is False
    assert versions.agent_uses_mux(bad) is False


@pytest.mark.parametrize(
    ("agent_version", "mux", "keepalive_off", "terminate_flag"),
    [
        ("3.3.987.0", True, True, True),
        ("3.3.0.0", True, True, True),  # what the real agent reports
        ("3.1.1511.0", True, False, True),
        ("3.0.196.0", False, False, True),
        ("3.0.100.0", False, False, True),
        ("2.3.722.0", False, False, False),
        ("3.3.987", False, False, False),  # three parts: "not greater" than any four-part gate
    ],
)
def test_plugin_gates(agent_version: str, mux: bool, keepalive_off: bool, terminate_flag: bool) -> None:
    assert versions.uses_mux(agent_version) is mux
    assert versions.client_smux_keepalive_off(agent_version) is keepalive_off
    assert versions.terminate_flag_supported(agent_version) is terminate_flag


@pytest.mark.parametrize(
    ("client_version", "mux", "keepalive_off", "note"),
    [
        ("1.2.677.0", True, True, False),
        ("1.2.331.0", True, False, False),
        ("1.2.295.0", True, False, True),
        ("1.1.70", True, False, True),
        ("1.1.69.9", False, False, True),
    ],
)
def test_agent_gates(client_version: str, mux: bool, keepalive_off: bool, note: bool) -> None:
    assert versions.agent_uses_mux(client_version) is mux
    assert versions.agent_smux_keepalive_off(client_version) is keepalive_off
    assert versions.needs_upgrade_note(client_version) is note


def test_our_advertised_versions_pass_every_gate_of_the_other_side() -> None:
    assert versions.uses_mux(versions.AGENT_VERSION)
    assert versions.client_smux_keepalive_off(versions.AGENT_VERSION)
    assert versions.agent_uses_mux(versions.CLIENT_VERSION)
    assert versions.agent_smux_keepalive_off(versions.CLIENT_VERSION)
    assert versions.cli_uses_env_handoff(versions.CLIENT_VERSION + "\n")
    assert not versions.cli_uses_env_handoff("1.2.497.0")
