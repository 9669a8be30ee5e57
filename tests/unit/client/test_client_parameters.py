"""``--parameters`` parsing: JSON and AWS CLI shorthand."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.client.parameters import ParameterError, parse_parameters


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("portNumber=3389, localPortNumber=13389", {"portNumber": ["3389"], "localPortNumber": ["13389"]}),
        ("host=db.internal,portNumber=5432", {"host": ["db.internal"], "portNumber": ["5432"]}),
        ("command=[ls,-l]", {"command": ["ls", "-l"]}),
        ("command=a,b", {"command": ["a", "b"]}),
        ('command="echo a,b"', {"command": ["echo a,b"]}),
        (r"command=echo a\,b", {"command": ["echo a,b"]}),
        (
            '{"portNumber":["80"],"localPortNumber":"8080"}',
            {"portNumber": ["80"], "localPortNumber": ["8080"]},
        ),
        ('{"portNumber":[80]}', {"portNumber": ["80"]}),
        ("", {}),
    ],
)
def test_parses_json_and_shorthand(text: str, expected: dict[str, list[str]]) -> None:
    assert parse_parameters(text) == expected


@pytest.mark.parametrize(
    "text", ["=1", "portNumber", "a=[1", "a=1]", '{"a": {"b": 1}}', "[1]", "{bad json", 'a="x']
)
def test_rejects_malformed_input_with_a_clear_error(text: str) -> None:
    with pytest.raises(ParameterError):
        parse_parameters(text)


names = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,15}", fullmatch=True)
values = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)


@given(st.dictionaries(names, st.lists(values, min_size=1, max_size=3), max_size=5))
def test_json_round_trips(parameters: dict[str, list[str]]) -> None:
    assert parse_parameters(json.dumps(parameters)) == parameters


@given(st.dictionaries(names, st.from_regex(r"[A-Za-z0-9_./-]{1,12}", fullmatch=True), max_size=5))
def test_simple_shorthand_round_trips(parameters: dict[str, str]) -> None:
    text = ",".join(f"{name}={value}" for name, value in parameters.items())
    assert parse_parameters(text) == {name: [value] for name, value in parameters.items()}


@given(st.text(max_size=200))
def test_never_raises_anything_but_parameter_error(text: str) -> None:
    try:
        result = parse_parameters(text)
    except ParameterError:
        return
    assert all(isinstance(v, list) and all(isinstance(i, str) for i in v) for v in result.values())
